"""The FiLM-conditioned 1-D temporal U-Net of Diffusion Policy (ConditionalUnet1D).

Input: a noisy action chunk (B, horizon, A), the diffusion step, and a global conditioning vector
(the encoded observations). Every residual block is modulated by a per-channel scale and bias
predicted from [step embedding, global conditioning] (FiLM).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a (B,) float or integer step."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        # An unsaved buffer whose dtype follows model.to(torch.float64): the embedding's dtype.
        self.register_buffer("dtype_probe", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        frequencies = torch.exp(torch.arange(half, device=x.device) * -(math.log(10000) / max(half - 1, 1)))
        dtype = self.dtype_probe.dtype
        angles = x.to(dtype)[:, None] * frequencies.to(dtype)[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )


class ConditionalResidualBlock1D(nn.Module):
    """Two Conv1dBlocks; the first one's output is FiLM-modulated by the conditioning vector."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block1 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_channels))
        self.residual = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        out = self.block1(x) * scale + bias
        return self.block2(out) + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """(B, T, A) noisy chunk, (B,) step, (B, global_cond_dim) -> (B, T, A) eps or x0 prediction."""

    def __init__(
        self,
        input_dim: int,
        global_cond_dim: int,
        down_dims: tuple[int, ...] = (256, 512, 1024),
        step_embed_dim: int = 128,
        kernel_size: int = 5,
        n_groups: int = 8,
    ):
        super().__init__()
        self.step_encoder = nn.Sequential(
            SinusoidalEmbedding(step_embed_dim),
            nn.Linear(step_embed_dim, 4 * step_embed_dim),
            nn.Mish(),
            nn.Linear(4 * step_embed_dim, step_embed_dim),
        )
        cond_dim = step_embed_dim + global_cond_dim
        block = lambda i, o: ConditionalResidualBlock1D(i, o, cond_dim, kernel_size, n_groups)  # noqa: E731
        dims = [input_dim, *down_dims]
        pairs = list(zip(dims[:-1], dims[1:], strict=True))

        self.down = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(pairs):
            last = i == len(pairs) - 1
            resample = nn.Identity() if last else nn.Conv1d(d_out, d_out, 3, 2, 1)
            self.down.append(nn.ModuleList([block(d_in, d_out), block(d_out, d_out), resample]))
        self.mid = nn.ModuleList([block(down_dims[-1], down_dims[-1]), block(down_dims[-1], down_dims[-1])])
        self.up = nn.ModuleList()
        # One upsampling per downsampling; the skip of the first level is unused, as in Diffusion Policy.
        for d_in, d_out in reversed(pairs[1:]):
            self.up.append(nn.ModuleList([block(2 * d_out, d_in), block(d_in, d_in), nn.ConvTranspose1d(d_in, d_in, 4, 2, 1)]))
        self.final = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups), nn.Conv1d(down_dims[0], input_dim, 1)
        )

    def forward(self, sample: torch.Tensor, step: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        x = sample.transpose(1, 2)  # (B, A, T): channels are the action dimensions
        cond = torch.cat([self.step_encoder(step), global_cond], dim=-1)
        skips = []
        for block1, block2, downsample in self.down:
            x = block2(block1(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, cond)
        for block1, block2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(block2(block1(x, cond), cond))
        return self.final(x).transpose(1, 2)
