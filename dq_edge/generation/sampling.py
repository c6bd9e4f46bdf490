"""Sampling from small logits in numpy: temperature, top-k, top-p, greedy, seeded draws.

All functions work on a batch of rows at once. Draws use one numpy Generator(PCG64(seed)) per
generation, or one per image (`ImageStreams`: image i of a run draws from its own seed, so its
tokens do not depend on the row or batch it ran in), and consume exactly one uniform number per
row per draw (also for greedy or forced rows), so the same seed gives the same tokens whatever
the backend.

`TokenSampler` is what the generator uses: the same math as `filtered_probs` + `draw` on
buffers allocated once per generation (a step allocates only [B] / [B, 1] temporaries).
The math is float64 and stable: logits are scaled by the temperature and shifted by their row
maximum; where scaling overflows (a temperature of 1e-310, or guided logits that are already
infinite) the row falls back to the limit the distribution tends to (all mass on the best ids).
"""

from __future__ import annotations

import numpy as np

from dq_edge.errors import DQEdgeError
from dq_edge.generation.params import SamplingParams

__all__ = ["ImageStreams", "SamplingParams", "TokenSampler", "draw", "filtered_probs", "make_rng", "sample_ids"]


def make_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


class ImageStreams:
    """One random stream per sample row, each seeded with its own image's seed: `random(n)`
    returns row i's next uniform for i < n, the same numbers a batch of one with that seed
    draws. Stands in for a numpy Generator wherever the samplers draw."""

    def __init__(self, seeds):
        self._streams = [make_rng(int(s)) for s in seeds]

    def reseed(self, row: int, seed: int) -> None:
        """Row `row` starts a new image: a fresh stream from that image's seed."""
        self._streams[row] = make_rng(int(seed))

    def random(self, n: int) -> np.ndarray:
        return np.array([self._streams[i].random() for i in range(n)])


def _overflow_limit(x: np.ndarray, logits: np.ndarray, allowed: np.ndarray, temperature: float, rows: np.ndarray) -> None:
    """Rows whose scaled logits left the float range (a tiny temperature): redo them as
    (z - max z) / T, whose maximum is 0; if z itself holds +inf, the +inf ids share the mass."""
    for i in rows:
        z = np.where(allowed[i], logits[i].astype(np.float64), -np.inf)
        top = z.max()
        with np.errstate(over="ignore"):  # differences / T -> -inf is the intended limit
            x[i] = np.where(z == top, 0.0, -np.inf) if np.isinf(top) else (z - top) / temperature


def _softmax_rows(x: np.ndarray, peak: np.ndarray, finite: bool) -> np.ndarray:
    """In place: exp(x - row max), rows normalised; rows without a finite id stay all 0.
    `peak`: the row maxima [B, 1]; `finite`: whether all of them are finite."""
    if not finite:
        peak[~np.isfinite(peak)] = 0.0
    x -= peak
    np.exp(x, out=x)  # exp(-inf) = 0 for masked ids
    total = x.sum(axis=1, keepdims=True)
    if finite:  # every row has an id with exp(0) = 1: total >= 1
        x /= total
    else:
        np.divide(x, total, out=x, where=total > 0)
    return x


def _top_p_keep(p: np.ndarray, top_p: float) -> np.ndarray:
    """bool [B,V]: the smallest set of most likely ids whose mass reaches top_p (>= 1 id)."""
    order = np.argsort(-p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=1)
    before = np.cumsum(sorted_p, axis=1) - sorted_p  # mass of strictly more likely ids
    keep = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(keep, order, before < top_p, axis=1)
    return keep


def filtered_probs(
    logits: np.ndarray, allowed: np.ndarray, temperature: float, top_k: int | None, top_p: float | None
) -> np.ndarray:
    """Probabilities float64 [B,V] after temperature, the allowed mask, top-k and top-p (nucleus);
    every row with an allowed id keeps at least one id. Rows without any allowed id are all 0."""
    rows, V = logits.shape
    sampler = TokenSampler(rows, V, temperature, top_k, top_p, greedy=False)
    return sampler.probs(logits, np.broadcast_to(allowed, logits.shape)).copy()


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
    sampler = TokenSampler(logits.shape[0], logits.shape[1], temperature, top_k, top_p, greedy)
    return sampler(logits, np.broadcast_to(allowed, logits.shape), rng)


class TokenSampler:
    """Draws one id per row from logits of one vocabulary, with float64 work buffers of
    [rows, vocab] allocated once. Call with `rows` <= the construction rows."""

    def __init__(self, rows: int, vocab: int, temperature: float, top_k: int | None, top_p: float | None, greedy: bool):
        self.temperature, self.greedy = float(temperature), greedy
        self.top_k = None if top_k is None or top_k >= vocab else int(top_k)
        self.top_p = None if top_p is None or top_p >= 1.0 else float(top_p)
        self._x = np.empty((rows, vocab), dtype=np.float64)  # scaled logits, then probabilities
        self._cdf = np.empty((rows, vocab), dtype=np.float64)
        self._flag = np.empty((rows, vocab), dtype=bool)

    def probs(self, logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        """The filtered distribution float64 [B, V] (a view of the sampler's buffer)."""
        B = logits.shape[0]
        x, flag = self._x[:B], self._flag[:B]
        np.copyto(x, logits)  # float32 -> float64, exact
        if self.temperature == 1.0:
            pass  # x / 1.0 == x exactly
        elif self.temperature >= 1e-30:  # float32 logits / T stay finite
            x /= self.temperature
        else:
            with np.errstate(over="ignore"):  # overflowing rows are redone below
                x /= self.temperature
        np.logical_not(allowed, out=flag)
        np.copyto(x, -np.inf, where=flag)
        peak = x.max(axis=1, keepdims=True)  # top-k below keeps every row's maximum
        finite = bool(np.isfinite(peak).all())
        if not finite:
            if np.isnan(peak).any():
                raise DQEdgeError(
                    "the model returned NaN logits", "check the artifact (an fp16 overflow?) or re-export it at fp32"
                )
            # +inf: scaling overflowed; -inf with an allowed id: every allowed logit underflowed
            overflow = np.flatnonzero((peak[:, 0] == np.inf) | ((peak[:, 0] == -np.inf) & allowed.any(axis=1)))
            if len(overflow):
                _overflow_limit(x, logits, allowed, self.temperature, overflow)
                peak = x.max(axis=1, keepdims=True)
        if self.top_k is not None:
            V = x.shape[1]
            kth_index = np.argpartition(x, V - self.top_k, axis=1)[:, V - self.top_k : V - self.top_k + 1]
            kth = np.take_along_axis(x, kth_index, axis=1)  # the k-th largest per row
            np.less(x, kth, out=flag)
            np.copyto(x, -np.inf, where=flag)
        _softmax_rows(x, peak, finite)
        if self.top_p is not None:
            np.logical_not(_top_p_keep(x, self.top_p), out=flag)
            x[flag] = 0.0
            total = x.sum(axis=1, keepdims=True)
            np.divide(x, total, out=x, where=total > 0)
        return x

    def __call__(self, logits: np.ndarray, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int64 [B]: one draw per row (consumes B uniforms, also when greedy)."""
        p = self.probs(logits, allowed)
        u = 1.0 - rng.random(p.shape[0])  # (0, 1]: never selects a zero-probability id
        if self.greedy:
            return p.argmax(axis=1)
        cdf = np.cumsum(p, axis=1, out=self._cdf[: p.shape[0]])
        u *= cdf[:, -1]
        below = np.less(cdf, u[:, None], out=self._flag[: p.shape[0]])
        # u <= 1 never lets the last cdf entry stay below u * total: the index is <= V - 1
        return below.sum(axis=1)
