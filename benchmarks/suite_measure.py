"""What the suite measures, configuration by configuration, and how it derives per-image costs.

Per-step curve: the latency of producing ONE token (position step + content step, i.e. one
position and one content id per sample) at several prefix lengths p (the token's index):
- official: two whole-prefix passes (benchmarks/official_baseline.py), cost grows with p;
- KV configurations (torch + KV cache, ORT fp32 / int8 / fp16): one step at index p with
  p cached rows. The static-cache design attends over all L cache rows behind a mask, so the
  cost is nearly flat in p by construction.

Integrated cost per image: a sequence of T tokens needs T-1 steps at indices 0..T-2. The
per-step curve is interpolated piecewise-linearly through the measured points (linear
extrapolation beyond the first/last point, bounded so that it never rises towards shorter
prefixes nor falls towards longer ones) and summed over those indices;
seconds per batch / batch = seconds per image. On emoji64 the same estimate is checked against
a directly measured whole-image replay (reported side by side).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from dq_edge.bench.stages import BenchSettings, bench_replay, bench_steps, sequence_length, synthetic_tokens
from dq_edge.bench.timing import measure
from dq_edge.sequences import TokenBatch

from official_baseline import FullPrefixStep

Say = Callable[[str], None]


def interpolate(points: dict[int, float], t: np.ndarray) -> np.ndarray:
    """Piecewise-linear through (prefix, seconds); beyond the ends the end segments continue
    linearly but only in the direction a step cost can go with more prefix: never above the
    first point below it (nor below 0), never below the last point above it. A noisy downward
    end segment therefore holds flat instead of driving the estimate to zero."""
    xs = np.array(sorted(points), dtype=np.float64)
    ys = np.array([points[int(x)] for x in xs], dtype=np.float64)
    if len(xs) == 1:
        return np.full(t.shape, ys[0])
    out = np.interp(t, xs, ys)
    lo, hi = t < xs[0], t > xs[-1]
    out[lo] = np.clip(ys[0] + (t[lo] - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0]), 0.0, ys[0])
    out[hi] = np.maximum(ys[-1] + (t[hi] - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]), ys[-1])
    return out


def integrated_seconds(points: dict[int, float], length: int) -> float:
    """Seconds for the T-1 steps of a T-token sequence (per batch)."""
    return float(interpolate(points, np.arange(length - 1, dtype=np.float64)).sum())


def official_curve(tr: torch.nn.Module, batch: int, prefixes: list[int], reps: int, say: Say, max_seconds: float) -> dict[int, dict]:
    """Per-step latency of the full-prefix algorithm. Warmup only while a step is cheap: at
    seconds per call, one extra call costs more than the allocator effects it would hide."""
    out, warm = {}, 1
    for p in sorted(prefixes):
        stats = measure(FullPrefixStep(tr, batch, p), warmup=warm, reps=reps, max_seconds=max_seconds)
        out[p] = {"wall": stats.ms()}
        warm = 1 if stats.p50 < 2.0 else 0
        say(f"  official b{batch} p{p}: {stats.p50 * 1e3:.1f} ms")
    return out


def kv_curve(backend, batch: int, prefixes: list[int], settings: BenchSettings, say: Say, label: str) -> dict[int, dict]:
    res = bench_steps(backend, batch, prefixes, settings)
    say(f"  {label} b{batch}: " + ", ".join(f"p{p} {r['wall']['p50']:.1f} ms" for p, r in res.items()))
    return res


@torch.inference_mode()
def official_replay(tr: torch.nn.Module, tokens: TokenBatch) -> None:
    """The official algorithm over a whole sequence: steps at every prefix 1..T-1."""
    T = int(tokens.lengths.max())
    c, p, s = (torch.from_numpy(a[:, :T]) for a in (tokens.content, tokens.position, tokens.segment))
    for t in range(1, T):
        hidden, _ = tr.position_stack(c[:, :t], p[:, :t], s[:, :t])
        tr.position_head(hidden)
        content_hidden, _ = tr.content_stack(hidden, p[:, 1 : t + 1], s[:, 1 : t + 1])
        tr.content_head(content_hidden)


def bench_official_replay(tr: torch.nn.Module, tokens: TokenBatch, settings: BenchSettings) -> dict:
    stats = measure(lambda: official_replay(tr, tokens), warmup=0, reps=settings.reps, max_seconds=settings.max_seconds)
    return {
        "batch": tokens.batch,
        "tokens_per_image": float(tokens.lengths.mean()),
        "wall": stats.ms(),
        "tokens_per_s": round(float(tokens.lengths.sum()) / stats.p50, 3),
        "images_per_s": round(tokens.batch / stats.p50, 4),
    }


def image_replays(config: str, backend_or_tr, layout, batch: int, ratios: dict[str, float], settings: BenchSettings) -> dict:
    """Measured whole-image token time for each named fine ratio (e.g. trained vs all-fine)."""
    out = {}
    for name, ratio in ratios.items():
        tokens = synthetic_tokens(layout, batch, ratio)
        if config == "official":
            out[name] = bench_official_replay(backend_or_tr, tokens, settings)
        else:
            out[name] = bench_replay(backend_or_tr, tokens, settings)
        out[name]["fine_ratio"] = ratio
    return out


def decoder_seconds(decode: Callable[[np.ndarray], object], layout, batch: int, settings: BenchSettings) -> float:
    codes = np.random.default_rng(0).integers(0, layout.n_codes, size=(batch, *layout.fine_hw), dtype=np.int64)
    return measure(lambda: decode(codes), warmup=settings.warmup, reps=settings.reps).p50


def per_image(points_ms: dict[int, float], layout, fine_ratio: float, batch: int) -> dict:
    """Integrated per-image token cost (seconds) from a per-step curve in milliseconds."""
    T = sequence_length(layout, fine_ratio)
    seconds = integrated_seconds({p: v / 1e3 for p, v in points_ms.items()}, T) / batch
    return {"tokens": T, "fine_ratio": fine_ratio, "seconds_per_image": seconds, "images_per_s": 1.0 / seconds if seconds else None}


def sampled_generation(backend, layout, batch: int, decode: Callable[[np.ndarray], object]) -> dict:
    """One real generation through the shared loop (masks + sampling, seed 0) and the decoder:
    what `dq-edge run` costs, including the loop's numpy work that token replay leaves out."""
    import time

    from dq_edge.generation import SamplingParams, generate_tokens
    from dq_edge.sequences import decode_batch

    classes = None if layout.n_classes == 0 else [i % layout.n_classes for i in range(batch)]  # no guidance
    t0 = time.perf_counter()
    tokens = generate_tokens(backend, layout, batch, classes=classes, params=SamplingParams(seed=0))
    t1 = time.perf_counter()
    grain, codes = decode_batch(layout, tokens)
    decode(codes)
    t2 = time.perf_counter()
    return {
        "batch": batch,
        "tokens_per_image": float(tokens.lengths.mean()),
        "fine_ratio": float(grain.mean()),
        "tokens_s": round(t1 - t0, 4),
        "decoder_s": round(t2 - t1, 4),
        "images_per_s": round(batch / (t2 - t0), 4),
        "tokens_per_s": round(float(tokens.lengths.sum()) / (t1 - t0), 2),
    }
