"""The image encoder: a ResNet-18 with GroupNorm, trained from scratch, pooled by a spatial softmax.

Pixels enter in [-1, 1] and the features leave through a plain linear layer, as in Diffusion
Policy's robomimic encoder.

As in Diffusion Policy: BatchNorm is replaced by GroupNorm (groups = channels / 16) because batch
statistics interact badly with the EMA weights, and global average pooling by a spatial softmax
that turns each of ``keypoints`` feature maps into its expected (x, y) image coordinate.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // 16), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = group_norm(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), group_norm(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18Trunk(nn.Module):
    """ResNet-18 without its pooling and classifier: (B, 3, H, W) -> (B, 8 width, H/32, W/32).

    stages < 4 keeps only the first ``stages`` stages: (B, 2^(stages-1) width, H/2^(stages+1), ...).
    On small CPU images that keeps a finer map for the spatial softmax (84 px: 6x6 with 3 stages
    instead of 3x3) and drops the widest, costliest convolutions.
    """

    def __init__(self, width: int = 64, stages: int = 4):
        super().__init__()
        if not 1 <= stages <= 4:
            raise ValueError(f"a ResNet-18 trunk has 1 to 4 stages, got {stages}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, 2, 3, bias=False), group_norm(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        blocks, channels = [], width
        for i, out_channels in enumerate([width, 2 * width, 4 * width, 8 * width][:stages]):
            stride = 1 if i == 0 else 2
            blocks += [BasicBlock(channels, out_channels, stride), BasicBlock(out_channels, out_channels)]
            channels = out_channels
        self.stages = nn.Sequential(*blocks)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class SpatialSoftmax(nn.Module):
    """Feature maps -> expected (x, y) in [-1, 1] of each of ``keypoints`` softmax-normalised maps."""

    def __init__(self, in_channels: int, keypoints: int):
        super().__init__()
        self.keypoint_conv = nn.Conv2d(in_channels, keypoints, 1)
        self.keypoints = keypoints

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.keypoint_conv(features)
        batch, k, height, width = maps.shape
        ys = torch.linspace(-1, 1, height, device=maps.device, dtype=maps.dtype)
        xs = torch.linspace(-1, 1, width, device=maps.device, dtype=maps.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        attention = torch.softmax(maps.reshape(batch, k, height * width), dim=-1)
        x = (attention * grid_x.reshape(1, 1, -1)).sum(-1)
        y = (attention * grid_y.reshape(1, 1, -1)).sum(-1)
        return torch.stack([x, y], dim=-1).reshape(batch, 2 * k)


class ImageEncoder(nn.Module):
    """One camera's encoder: uint8 (B, 3, h, w) -> (B, feature_dim) features."""

    def __init__(self, width: int, keypoints: int, feature_dim: int, stages: int = 4):
        super().__init__()
        self.trunk = ResNet18Trunk(width, stages)
        self.pool = SpatialSoftmax(self.trunk.out_channels, keypoints)
        self.out = nn.Linear(2 * keypoints, feature_dim)
        self.feature_dim = feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # As Diffusion Policy: pixels in [-1, 1] (its image range normaliser) and the linear
        # keypoint projection as the feature, with no ReLU (which would zero half of each feature).
        x = images.to(self.out.weight.dtype) * (2 / 255.0) - 1  # float64 in a float64 model
        return self.out(self.pool(self.trunk(x)))
