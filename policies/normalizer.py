"""Min-max normalisation of actions and low-dimensional observations to [-1, 1].

Fitted once on the training data and saved inside the checkpoint (as buffers of the model), so a
loaded policy maps observations and actions exactly as in training.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

# A dimension whose range is below this is constant in the data; it maps to 0.
RANGE_EPS = 1e-6


class MinMaxNormalizer(nn.Module):
    """Per-key, per-dimension affine map of [min, max] onto [-1, 1]; keys are e.g. action, agent_pos."""

    def __init__(self, widths: Mapping[str, int]):
        super().__init__()
        self.keys = tuple(widths)
        for key, width in widths.items():
            self.register_buffer(f"{key}_min", torch.zeros(width))
            self.register_buffer(f"{key}_max", torch.ones(width))

    @classmethod
    def fitted(cls, data: Mapping[str, np.ndarray]) -> MinMaxNormalizer:
        """A normaliser fitted on arrays of shape (N, D) per key."""
        normalizer = cls({key: np.asarray(values).shape[-1] for key, values in data.items()})
        normalizer.fit(data)
        return normalizer

    def fit(self, data: Mapping[str, np.ndarray]) -> None:
        for key in self.keys:
            values = np.asarray(data[key], dtype=np.float64).reshape(-1, self.width(key))
            if len(values) == 0 or not np.all(np.isfinite(values)):
                raise ValueError(f"cannot fit the normaliser on {key}: empty or non-finite data")
            getattr(self, f"{key}_min").copy_(torch.from_numpy(values.min(axis=0)))
            getattr(self, f"{key}_max").copy_(torch.from_numpy(values.max(axis=0)))

    def width(self, key: str) -> int:
        return getattr(self, f"{key}_min").shape[0]

    def _scale_offset(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = getattr(self, f"{key}_min"), getattr(self, f"{key}_max")
        span = high - low
        constant = span < RANGE_EPS
        scale = torch.where(constant, torch.ones_like(span), 2 / span.clamp(min=RANGE_EPS))
        center = (high + low) / 2
        return scale, center

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """x in data units -> [-1, 1] (constant dimensions -> 0)."""
        scale, center = self._scale_offset(key)
        return (x - center.to(x.dtype)) * scale.to(x.dtype)

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> data units."""
        scale, center = self._scale_offset(key)
        return x / scale.to(x.dtype) + center.to(x.dtype)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}: {self.width(key)}" for key in self.keys)
