"""Host share of token generation: the numpy work of the loop (masks, sampling, bookkeeping)
against the whole token time, on an export of the shipped model (ONNX Runtime CPU, fp32).

    python benchmarks/host_overhead.py --engine EXPORT_DIR [--batches 1,8] [--reps 3] [--threads 1]

host share = (token wall time - time inside the backend's step graphs) / token wall time.
The backend's own clock (`Backend.stage_times()`) gives the graph time; everything else of
`generate_tokens` is host work. Each batch size generates `--reps` batches (seeds 0..reps-1)
after one untimed warm-up batch and reports the median share. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def _generate():
    try:  # after the generation core moved (dq_edge.generation)
        from dq_edge.generation import SamplingParams, generate_tokens
    except ImportError:  # before: the loop lived in dq_edge.runtime
        from dq_edge.runtime.loop import SamplingParams, generate_tokens
    return SamplingParams, generate_tokens


def _graph_seconds(backend) -> float:
    times = backend.stage_times()
    return sum(sum(times.get(stage, [])) for stage in ("position_step", "content_step", "prefill"))


def measure(engine: str, batch: int, reps: int, threads: int | None) -> dict:
    from dq_edge.runtime.session import open_runtime

    SamplingParams, generate_tokens = _generate()
    opened = open_runtime(engine, "ort-cpu", "fp32", threads=threads)
    backend, layout = opened.backend, opened.layout
    classes = None if layout.n_classes == 0 else [i % layout.n_classes for i in range(batch)]
    generate_tokens(backend, layout, batch, classes=classes, params=SamplingParams(seed=1000))  # warm-up
    shares, token_ms = [], []
    for seed in range(reps):
        before = _graph_seconds(backend)
        t0 = time.perf_counter()
        tokens = generate_tokens(backend, layout, batch, classes=classes, params=SamplingParams(seed=seed))
        wall = time.perf_counter() - t0
        graphs = _graph_seconds(backend) - before
        steps = int(tokens.lengths.max()) - 1
        shares.append((wall - graphs) / wall)
        token_ms.append(1e3 * wall / steps)
    return {
        "batch": batch,
        "host_share_median": round(statistics.median(shares), 4),
        "host_share_all": [round(s, 4) for s in shares],
        "ms_per_step_median": round(statistics.median(token_ms), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, help="fp32 export folder of the shipped model")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = [measure(args.engine, int(b), args.reps, args.threads) for b in args.batches.split(",")]
    print(json.dumps({
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "threads": args.threads,
        "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
