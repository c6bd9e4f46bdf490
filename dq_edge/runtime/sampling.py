"""Sampling from small logits in numpy: temperature, top-k, top-p, greedy, seeded draws, CFG.

Torch-free; shared by every backend through `dq_edge.runtime.loop`. All functions work on a
batch of rows at once. Draws use one numpy Generator(PCG64(seed)) per generation and consume
exactly one uniform number per row per draw (also for greedy or forced rows), so the same
seed gives the same tokens whatever the backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dq_edge.errors import InputError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_k: int | None = None  # content
    top_p: float | None = None
    top_k_pos: int | None = None  # positions
    top_p_pos: float | None = None
    greedy: bool = False
    seed: int = 0
    cfg_scale: float | None = None  # classifier-free guidance; None = off
    fixed_fine_positions: bool = False  # fine positions = every cell of the fine regions, raster order

    def validate(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"temperature must be > 0, got {self.temperature}", "use e.g. --temperature 1.0")
        for name in ("top_k", "top_k_pos"):
            k = getattr(self, name)
            if k is not None and (int(k) != k or k < 1):
                raise InputError(f"{name.replace('_', '-')} must be an integer >= 1, got {k}", "omit it to keep all ids")
        for name in ("top_p", "top_p_pos"):
            p = getattr(self, name)
            if p is not None and not (0.0 < p <= 1.0):
                raise InputError(f"{name.replace('_', '-')} must be in (0, 1], got {p}", "omit it or use e.g. 0.9")
        if self.cfg_scale is not None and not (math.isfinite(self.cfg_scale) and self.cfg_scale > 0):
            raise InputError(f"cfg-scale must be > 0, got {self.cfg_scale}", "use e.g. --cfg-scale 1.5, or omit it")
        if self.seed < 0:
            raise InputError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def make_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def mix_guidance(cond: np.ndarray, uncond: np.ndarray, scale: float) -> np.ndarray:
    """Classifier-free guidance on logits: uncond + scale * (cond - uncond) (scale 1 = cond)."""
    return uncond + scale * (cond - uncond)


def filtered_probs(
    logits: np.ndarray, allowed: np.ndarray, temperature: float, top_k: int | None, top_p: float | None
) -> np.ndarray:
    """Probabilities float64 [B,V] after temperature, the allowed mask, top-k and top-p (nucleus);
    every row with an allowed id keeps at least one id. Rows without any allowed id are all 0."""
    x = np.where(allowed, logits.astype(np.float64) / temperature, -np.inf)
    V = x.shape[1]
    if top_k is not None and top_k < V:
        kth = -np.partition(-x, top_k - 1, axis=1)[:, top_k - 1 : top_k]  # k-th largest per row
        x = np.where(x >= kth, x, -np.inf)
    peak = x.max(axis=1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    p = np.exp(x - peak)  # exp(-inf) = 0 for masked ids
    total = p.sum(axis=1, keepdims=True)
    p = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=1)
        before = np.cumsum(sorted_p, axis=1) - sorted_p  # mass of strictly more likely ids
        keep_sorted = before < top_p  # smallest prefix whose mass reaches top_p (>= 1 id)
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        p = np.where(keep, p, 0.0)
        total = p.sum(axis=1, keepdims=True)
        p = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    return p


def draw(probs: np.ndarray, rng: np.random.Generator, greedy: bool = False) -> np.ndarray:
    """One id per row (int64 [B]): inverse-CDF draw with u in (0, 1], or argmax when greedy.
    Consumes B uniforms either way."""
    u = 1.0 - rng.random(probs.shape[0])  # (0, 1]: never selects a zero-probability id
    if greedy:
        return probs.argmax(axis=1).astype(np.int64)
    cdf = np.cumsum(probs, axis=1)
    target = u[:, None] * cdf[:, -1:]
    idx = (cdf < target).sum(axis=1)
    return np.minimum(idx, probs.shape[1] - 1).astype(np.int64)


def sample_ids(
    logits: np.ndarray,
    allowed: np.ndarray,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
) -> np.ndarray:
    """Sample one allowed id per row of logits [B,V] (allowed bool [B,V] or [V])."""
    allowed = np.broadcast_to(allowed, logits.shape)
    return draw(filtered_probs(logits, allowed, temperature, top_k, top_p), rng, greedy)
