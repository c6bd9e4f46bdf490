"""Exponential moving average of model weights (parameters averaged, buffers copied)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live = dict(model.named_parameters())
        for name, p in self.model.named_parameters():
            p.lerp_(live[name].detach(), 1 - self.decay)
        live_buffers = dict(model.named_buffers())
        for name, b in self.model.named_buffers():
            b.copy_(live_buffers[name])  # codebook EMA statistics etc. are already averages

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
