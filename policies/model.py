"""The diffusion model: observation encoder + conditional U-Net, its training loss and DDIM sampling.

Observations come in data units (agent_pos or state) and as cropped uint8 images; actions come out
in data units. The normaliser lives inside the model as buffers, so it travels with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from policies.ambient import ambient_training_pair
from policies.config import PolicyConfig
from policies.dataset import crop_shape
from policies.noise import NoiseSchedule
from policies.normalizer import MinMaxNormalizer
from policies.unet import ConditionalUnet1D
from policies.vision import ImageEncoder

STATE_DIM = 5  # pusher x, y, slider x, y, theta: the env's "state" observation
AGENT_POS_DIM = 2


class DiffusionModel(nn.Module):
    """Diffusion Policy's model for one set of cameras (image mode) or the low-dimensional state.

    cameras: {name: (H, W)} of the full images the stores hold (the encoder sees crops of them).
    """

    def __init__(self, config: PolicyConfig, cameras: dict[str, tuple[int, int]], action_dim: int):
        super().__init__()
        self.config = config
        self.action_dim = action_dim
        self.cameras = {name: tuple(hw) for name, hw in cameras.items()} if config.obs_mode == "image" else {}
        self.crops = {name: crop_shape(hw, config.crop_ratio) for name, hw in self.cameras.items()}
        self.low_dim_key = "state" if config.obs_mode == "state" else "agent_pos"
        low_dim = STATE_DIM if config.obs_mode == "state" else AGENT_POS_DIM
        self.normalizer = MinMaxNormalizer({"action": action_dim, self.low_dim_key: low_dim})
        self.encoders = nn.ModuleDict(
            {
                name: ImageEncoder(config.resnet_width, config.spatial_softmax_keypoints, config.image_feature_dim, config.resnet_stages)
                for name in self.cameras
            }
        )
        self.angle_as_cos_sin = config.obs_mode == "state" and config.state_angle == "cos_sin"
        obs_dim = low_dim + int(self.angle_as_cos_sin) + config.image_feature_dim * len(self.cameras)
        self.unet = ConditionalUnet1D(
            input_dim=action_dim,
            global_cond_dim=obs_dim * config.n_obs_steps,
            down_dims=config.down_dims,
            step_embed_dim=config.diffusion_step_embed_dim,
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
        )
        self.schedule = NoiseSchedule.squaredcos_cap_v2(config.num_train_timesteps)

    # ----------------------------------------------------------------------------------------------
    # Conditioning

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype: float32 as trained; float64 where sampling must not depend on the batch."""
        return next(self.unet.parameters()).dtype

    def encode_obs(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, n_obs_steps, ...) observations -> (B, n_obs_steps * obs_dim) global conditioning."""
        low_dim = obs[self.low_dim_key].to(self.dtype)
        normalized = self.normalizer.normalize(self.low_dim_key, low_dim)
        if self.angle_as_cos_sin:  # theta wraps at +-pi; its cosine and sine do not jump there
            theta = low_dim[..., STATE_DIM - 1 :]
            normalized = torch.cat([normalized[..., : STATE_DIM - 1], torch.cos(theta), torch.sin(theta)], dim=-1)
        features = [normalized]
        for name, encoder in self.encoders.items():
            images = obs[name]
            batch, steps = images.shape[:2]
            features.append(encoder(images.flatten(0, 1)).reshape(batch, steps, -1).to(features[0].dtype))
        return torch.cat(features, dim=-1).flatten(1)

    # ----------------------------------------------------------------------------------------------
    # Training

    def loss(
        self,
        batch: dict[str, torch.Tensor],
        t: torch.Tensor,
        ambient_sigma_min: torch.Tensor,
        noise: torch.Tensor,
        contraction_noise: torch.Tensor,
        *,
        contract: bool = True,
    ) -> torch.Tensor:
        """Per-sample (B,) squared error of the eps or x0 prediction.

        t: (B,) DDPM steps. ambient_sigma_min: (B,) the sigma_min of the ambient loss (science.md §3):
        the chunk is first contracted to it with ``contraction_noise`` (unless not ``contract``: data
        that already are noisy copies at sigma_min are taken as x_{sigma_min} as they are), then
        noised on to sigma_t with ``noise``; 0 gives plain denoising. noise, contraction_noise:
        (B, horizon, A) standard normal, drawn by the caller so that a run is reproducible on any device.
        """
        x0 = self.normalizer.normalize("action", batch["action"].float())
        cond = self.encode_obs(batch)
        sigma = self.schedule.sigmas.to(x0.device)[t]
        x_t, target = ambient_training_pair(
            x0, contraction_noise.to(x0), noise.to(x0), sigma, ambient_sigma_min.to(x0), self.config.prediction_type,
            contract=contract,
        )
        prediction = self.unet(x_t, t, cond)
        return ((prediction.float() - target) ** 2).mean(dim=(1, 2))

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        t: torch.Tensor,
        ambient_sigma_min: torch.Tensor,
        noise: torch.Tensor,
        contraction_noise: torch.Tensor,
        *,
        contract: bool = True,
    ) -> torch.Tensor:
        """The training loss (``loss``): DistributedDataParallel synchronises the gradients of what forward computes."""
        return self.loss(batch, t, ambient_sigma_min, noise, contraction_noise, contract=contract)

    # ----------------------------------------------------------------------------------------------
    # Inference

    @torch.no_grad()
    def sample_actions(self, obs: dict[str, torch.Tensor],
                       generator: torch.Generator | Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
        """(B, horizon, action_dim) action chunks in data units, by DDIM from the observations.

        generator: a CPU torch.Generator for the initial noise (the same seed gives the same chunk
        on any device), or one per batch row (each row's noise then depends on its generator alone).
        The chunks are computed in the model's dtype: a float64 model gives each row, in practice, the
        same float32 chunk whatever else is in the batch (float32 kernels round differently per batch size).
        """
        dtype = self.dtype
        cond = self.encode_obs(obs)
        row_shape = (self.config.horizon, self.action_dim)
        if isinstance(generator, Sequence):
            if len(generator) != cond.shape[0]:
                raise ValueError(f"{len(generator)} generators for a batch of {cond.shape[0]}")
            x_T = torch.cat([torch.randn((1, *row_shape), generator=g) for g in generator])
        else:
            x_T = torch.randn((cond.shape[0], *row_shape), generator=generator)
        x_T = x_T.to(device=cond.device, dtype=dtype)
        schedule = self.schedule.to(cond.device, dtype)
        x0 = schedule.ddim_sample(
            lambda x, t: self.unet(x, t, cond).to(dtype),
            x_T,
            num_inference_steps=self.config.num_inference_steps,
            prediction_type=self.config.prediction_type,
            clip_sample=self.config.clip_sample,
        )
        return self.normalizer.unnormalize("action", x0)


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; a name torch does not know, or a GPU it does not see, is a ValueError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:  # torch's message lists every backend it was built to know; name the ones we run on
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no GPU")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} requested but torch sees {torch.cuda.device_count()} GPU(s)")
    return resolved
