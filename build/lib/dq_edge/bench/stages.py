"""Per-stage latency of any `Backend` (torch-free): encoder, dgc, position step, content step,
decoder, plus token replay (teacher-forced stepping through given sequences) for images/s.

Two clocks per stage: the wall clock around the Python call (what a user waits for) and the
backend's own `stage_times()` (CUDA events on TensorRT, so device time apart from Python). The
report shows the backend's numbers per stage and the wall clock for whole steps and images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dq_edge.bench.timing import Stats, measure
from dq_edge.errors import DQEdgeError
from dq_edge.generation.backend import Backend
from dq_edge.sequences import TokenBatch, encode_batch
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout


@dataclass(frozen=True)
class BenchSettings:
    warmup: int = 1
    reps: int = 5
    max_seconds: float | None = None  # cap per measured quantity (slow configurations)


def _timed_with_stages(
    backend: Backend, fn: Callable[[], object], stages: tuple[str, ...], settings: BenchSettings
) -> dict[str, dict]:
    """Wall-clock Stats of `fn` plus Stats of the backend's own per-stage times during the timed
    calls (warmup calls excluded)."""
    for _ in range(settings.warmup):
        fn()
    backend.reset_stage_times()  # the backend's statistics now cover the timed calls only
    wall = measure(fn, warmup=0, reps=settings.reps, max_seconds=settings.max_seconds)
    out = {"wall": wall.ms()}
    timed = backend.stage_times()
    for s in stages:
        if s in timed and timed[s].count:
            out[s] = Stats.of_stage(timed[s]).ms()
    return out


def step_tokens(layout: TokenLayout, batch: int, step: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible ids for one step at index `step`: coarse stream for the first Nc+2 rows, fine
    after. Ids never change the cost of a step; they only have to be in range."""
    rng = np.random.default_rng(seed + step)
    segment = SEGMENT_COARSE if step < layout.n_coarse + 2 else SEGMENT_FINE
    grid = layout.grid_size(segment)
    next_segment = SEGMENT_COARSE if step + 1 < layout.n_coarse + 2 else SEGMENT_FINE
    return {
        "content": rng.integers(0, layout.n_codes, size=batch, dtype=np.int64),
        "position": rng.integers(0, grid, size=batch, dtype=np.int64),
        "segment": np.full(batch, segment, dtype=np.int64),
        "next_position": rng.integers(0, layout.grid_size(next_segment), size=batch, dtype=np.int64),
        "next_segment": np.full(batch, next_segment, dtype=np.int64),
    }


def bench_steps(backend: Backend, batch: int, steps: list[int], settings: BenchSettings) -> dict[int, dict]:
    """Latency of one token (position step + content step) at each step index in `steps`."""
    L = backend.dims.max_length
    results = {}
    backend.begin(batch)
    for step in steps:
        if not 0 <= step < L - 1:
            raise DQEdgeError(f"step {step} is outside 0..{L - 2} for max length {L}")
        ids = step_tokens(backend.layout, batch, step)

        def one_token(step: int = step, ids: dict = ids) -> None:
            backend.position_step(ids["content"], ids["position"], ids["segment"], step)
            backend.content_step(ids["next_position"], ids["next_segment"], step)

        results[step] = _timed_with_stages(backend, one_token, ("position_step", "content_step"), settings)
    return results


def bench_vae(backend: Backend, batch: int, settings: BenchSettings) -> dict[str, dict]:
    """encoder + dgc (one `encode` call) and decoder at `batch` images of the model's size."""
    d = backend.dims
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, size=(batch, 3, d.image_size, d.image_size)).astype(np.float32)
    codes = rng.integers(0, backend.layout.n_codes, size=(batch, *d.fine_hw), dtype=np.int64)
    out: dict[str, dict] = {}
    for name, fn, stages in (
        ("encode", lambda: backend.encode(image), ("encoder", "dgc")),
        ("decode", lambda: backend.decode(codes), ("decoder",)),
    ):
        try:
            out[name] = _timed_with_stages(backend, fn, stages, settings)
        except DQEdgeError as exc:  # token-only exports (no VAE graphs) still bench the steps
            out[name] = {"unavailable": exc.one_line()}
    return out


def synthetic_grain(layout: TokenLayout, batch: int, fine_ratio: float, seed: int = 0) -> np.ndarray:
    """Grain maps [batch, Hc, Wc] with exactly round(fine_ratio * Nc) fine regions each."""
    rng = np.random.default_rng(seed)
    n_fine = int(round(fine_ratio * layout.n_coarse))
    grain = np.zeros((batch, layout.n_coarse), dtype=np.int64)
    for row in grain:
        row[rng.choice(layout.n_coarse, size=n_fine, replace=False)] = 1
    return grain.reshape(batch, *layout.coarse_hw)


def synthetic_tokens(layout: TokenLayout, batch: int, fine_ratio: float, seed: int = 0) -> TokenBatch:
    """Token sequences of the length a `fine_ratio` image has (random codes; class 0 for class
    models). fine_ratio=1 is the fixed-length all-fine sequence of a plain VQ transformer."""
    grain = synthetic_grain(layout, batch, fine_ratio, seed)
    codes = np.random.default_rng(seed).integers(0, layout.n_codes, size=(batch, *layout.fine_hw), dtype=np.int64)
    classes = None if layout.n_classes == 0 else [0] * batch
    return encode_batch(layout, grain, codes, classes)


def sequence_length(layout: TokenLayout, fine_ratio: float) -> int:
    """Tokens per image: 2 start + 2 EOS + coarse codes + fine codes (r x r per fine region)."""
    n_fine = int(round(fine_ratio * layout.n_coarse))
    cells = layout.n_fine // layout.n_coarse
    return 4 + (layout.n_coarse - n_fine) + cells * n_fine


def replay(backend: Backend, tokens: TokenBatch) -> None:
    """Teacher-forced stepping: every token of `tokens` through both step graphs, exactly the
    backend work of generating these sequences (sampling, a few numpy ops per step, excluded)."""
    T = int(tokens.lengths.max())
    backend.begin(tokens.batch)
    for t in range(T - 1):
        backend.position_step(tokens.content[:, t], tokens.position[:, t], tokens.segment[:, t], t)
        backend.content_step(tokens.position[:, t + 1], tokens.segment[:, t + 1], t)


def bench_replay(backend: Backend, tokens: TokenBatch, settings: BenchSettings) -> dict:
    """Seconds to replay `tokens` (one whole batch of images), tokens/s and images/s."""
    stats = measure(lambda: replay(backend, tokens), warmup=settings.warmup, reps=settings.reps,
                    max_seconds=settings.max_seconds)
    n_tokens = int(tokens.lengths.sum())
    return {
        "batch": tokens.batch,
        "tokens_per_image": float(tokens.lengths.mean()),
        "wall": stats.ms(),
        "tokens_per_s": round(n_tokens / stats.p50, 3),
        "images_per_s": round(tokens.batch / stats.p50, 4),
    }


def spread_steps(max_length: int, count: int = 3) -> list[int]:
    """`count` step indices spread over 1..L-2 (start, middle, end of the cache)."""
    hi = max_length - 2
    return sorted({int(round(x)) for x in np.linspace(1, hi, count)})


def bench_backend(
    backend: Backend,
    batch_sizes: list[int],
    settings: BenchSettings,
    steps: list[int] | None = None,
    fine_ratio: float = 0.5,
) -> list[dict]:
    """Everything `dq-edge bench` reports, one record per batch size."""
    steps = steps or spread_steps(backend.dims.max_length)
    records = []
    for batch in batch_sizes:
        started = time.perf_counter()
        step_results = bench_steps(backend, batch, steps, settings)
        vae = bench_vae(backend, batch, settings)
        tokens = synthetic_tokens(backend.layout, batch, fine_ratio)
        generation = bench_replay(backend, tokens, settings)
        decode = vae.get("decode", {}).get("wall")
        if decode:  # images/s of tokens + decoder (what a generated image costs)
            per_batch = generation["wall"]["p50"] + decode["p50"]
            generation["images_per_s_with_decoder"] = round(batch / (per_batch / 1e3), 4)
        records.append(
            {
                "batch": batch,
                "steps": {str(k): v for k, v in step_results.items()},
                "vae": vae,
                "generation": {**generation, "fine_ratio": fine_ratio, "mode": "token replay (no sampling)"},
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    return records
