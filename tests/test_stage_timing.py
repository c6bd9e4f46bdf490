"""Backends keep bounded timing statistics: memory does not grow with the number of steps."""

from __future__ import annotations

import numpy as np
import pytest

from dq_edge.bench.timing import Stats
from dq_edge.runtime.timing import RESERVOIR_SIZE, StageStats, StageTimes


def test_exact_while_small():
    s = StageStats()
    for v in (0.004, 0.001, 0.003, 0.002):
        s.add(v)
    assert (s.count, s.first, s.min, s.max) == (4, 0.004, 0.001, 0.004) and s.exact
    assert s.total == pytest.approx(0.01) and s.percentile(50) == pytest.approx(0.0025)
    assert Stats.of_stage(s) == Stats.of([0.004, 0.001, 0.003, 0.002])


def test_bounded_after_many_calls():
    """200k calls of a known distribution: exact count/sum/min/max, a fixed-size sample whose
    percentiles estimate the true ones (a 2048-draw sample's median is within ~0.03 of 0.5)."""
    values = np.random.default_rng(0).random(200_000)
    s = StageStats()
    for v in values:
        s.add(float(v))
    assert len(s._sample) == RESERVOIR_SIZE and not s.exact
    assert s.count == values.size and s.min == values.min() and s.max == values.max()
    assert s.total == pytest.approx(values.sum(), rel=1e-9)
    assert abs(s.percentile(50) - 0.5) < 0.05 and abs(s.percentile(90) - 0.9) < 0.05


def test_snapshot_is_a_copy_and_reset_starts_afresh():
    times = StageTimes(["a"])
    times.add("a", 1.0)
    snap = times.snapshot()
    times.add("a", 2.0)
    times.add("b", 3.0)
    assert snap["a"].count == 1 and "b" not in snap
    times.reset()
    assert {k: v.count for k, v in times.snapshot().items()} == {"a": 0, "b": 0}
