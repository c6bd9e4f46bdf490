"""Repeated timing with warmup and robust summary statistics (p50/p90, not means)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from dq_edge.runtime.timing import StageStats


@dataclass(frozen=True)
class Stats:
    """Seconds per call over `n` timed calls (warmup calls excluded)."""

    n: int
    p50: float
    p90: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, seconds: list[float] | np.ndarray) -> "Stats":
        arr = np.asarray(seconds, dtype=np.float64)
        if arr.size == 0:
            raise ValueError("no timings to summarise")
        return cls(
            n=int(arr.size),
            p50=float(np.percentile(arr, 50)),
            p90=float(np.percentile(arr, 90)),
            mean=float(arr.mean()),
            min=float(arr.min()),
            max=float(arr.max()),
        )

    @classmethod
    def of_stage(cls, stage: StageStats) -> "Stats":
        """A backend's bounded per-stage statistics in the same form."""
        if not stage.count:
            raise ValueError("no timings to summarise")
        return cls(n=stage.count, p50=stage.percentile(50), p90=stage.percentile(90), mean=stage.mean,
                   min=stage.min, max=stage.max)

    def to_dict(self) -> dict:
        return asdict(self)

    def ms(self) -> dict[str, float]:
        """The same numbers in milliseconds, rounded for reports."""
        return {"n": self.n, **{k: round(v * 1e3, 4) for k, v in asdict(self).items() if k != "n"}}


def measure(
    fn: Callable[[], object],
    warmup: int = 1,
    reps: int = 5,
    max_seconds: float | None = None,
) -> Stats:
    """Call `fn` `warmup` times untimed, then up to `reps` times timed.

    `max_seconds` caps the timed phase for slow configurations (at least one timed call always
    runs), so a suite keeps its time budget when a configuration is much slower than expected.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
    return Stats.of(times)
