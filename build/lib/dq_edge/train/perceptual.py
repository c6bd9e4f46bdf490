"""Perceptual loss from weights the user supplies, never from a randomly initialised network.

The user passes a TorchScript file (`torch.jit.save` of a module) whose forward(x, y) takes two
image batches in [-1, 1] and returns a distance per image [B] (or [B,1,1,1], or a scalar); an
LPIPS network scripted with its trained weights is the intended use. No file -> no perceptual term.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from dq_edge.errors import CheckpointError


class ScriptedPerceptual(nn.Module):
    def __init__(self, path: str | Path):
        super().__init__()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as exc:
            raise CheckpointError(f"perceptual weights {path} are not a TorchScript file: {exc}", "pass a file written by torch.jit.save") from exc
        for p in self.net.parameters():
            p.requires_grad_(False)
        probe = torch.zeros(1, 3, 16, 16)
        try:
            d = self.net(probe, probe)
        except RuntimeError as exc:
            raise CheckpointError(f"perceptual network {path} does not accept (x, y) image pairs: {exc}", "its forward must be f(x, y) -> distance") from exc
        if d.numel() != 1:
            raise CheckpointError(f"perceptual network {path} returned {tuple(d.shape)} for one pair", "return one distance per image")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x, y).reshape(-1).mean()


def load_perceptual(path: str | None) -> ScriptedPerceptual | None:
    return ScriptedPerceptual(path) if path else None
