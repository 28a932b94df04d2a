"""Exponential moving average of the weights, with Diffusion Policy's warm-up of the decay."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(step: int, power: float = 0.75, max_decay: float = 0.9999) -> float:
    """Decay at optimiser step ``step`` (1-based): 0 at the first, then 1 - (1 + (step - 1))^-power, capped."""
    step = max(0, step - 1)
    if step == 0:
        return 0.0
    return min(max_decay, max(0.0, 1 - (1 + step) ** -power))


class EMA:
    """An averaged copy of a model; ``update(model, step)`` after each optimiser step."""

    def __init__(self, model: nn.Module, power: float = 0.75, max_decay: float = 0.9999):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.power, self.max_decay = power, max_decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        weight = 1 - ema_decay(step, self.power, self.max_decay)
        averaged = list(self.model.parameters())
        torch._foreach_lerp_(averaged, [p.detach() for p in model.parameters()], weight)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)  # buffers (the normaliser) are copied, not averaged
