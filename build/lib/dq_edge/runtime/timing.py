"""Bounded per-stage timing of a backend: a long-lived process (a server, a codec, a benchmark
loop) records millions of steps, so a backend keeps running statistics, never a list per call.

Count, sum, min, max and the first call (ONNX Runtime and TensorRT do one-time work there) are
exact. Percentiles come from a uniform reservoir sample of RESERVOIR_SIZE calls (Vitter's
Algorithm R), exact while a stage has had at most that many calls.
"""

from __future__ import annotations

import math
import random
from typing import Iterable

import numpy as np

RESERVOIR_SIZE = 2048


class StageStats:
    """Running statistics of one stage's call durations (seconds)."""

    def __init__(self, reservoir_size: int = RESERVOIR_SIZE, seed: int = 0):
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.first: float | None = None
        self._size = reservoir_size
        self._sample: list[float] = []
        self._rng = random.Random(seed)  # deterministic: the same run keeps the same sample

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.min = min(self.min, seconds)
        self.max = max(self.max, seconds)
        if self.first is None:
            self.first = seconds
        if len(self._sample) < self._size:
            self._sample.append(seconds)
        else:
            slot = self._rng.randrange(self.count)  # keep each call with probability size/count
            if slot < self._size:
                self._sample[slot] = seconds

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def exact(self) -> bool:
        """True while percentiles come from every call, not a sample."""
        return self.count <= self._size

    def percentile(self, q: float) -> float:
        if not self._sample:
            return math.nan
        return float(np.percentile(np.asarray(self._sample, dtype=np.float64), q))

    def copy(self) -> "StageStats":
        other = StageStats(self._size)
        other.count, other.total, other.min, other.max, other.first = self.count, self.total, self.min, self.max, self.first
        other._sample = list(self._sample)
        other._rng.setstate(self._rng.getstate())
        return other


class StageTimes:
    """One StageStats per stage name; what a backend's `stage_times()` returns a copy of."""

    def __init__(self, stages: Iterable[str] = ()):
        self._stats: dict[str, StageStats] = {stage: StageStats() for stage in stages}

    def add(self, stage: str, seconds: float) -> None:
        stats = self._stats.get(stage)
        if stats is None:
            stats = self._stats[stage] = StageStats()
        stats.add(seconds)

    def snapshot(self) -> dict[str, StageStats]:
        return {stage: stats.copy() for stage, stats in self._stats.items()}

    def reset(self) -> None:
        self._stats = {stage: StageStats() for stage in self._stats}
