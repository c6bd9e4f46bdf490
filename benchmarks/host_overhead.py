"""Host share of token generation: the numpy work of the loop (masks, sampling, bookkeeping)
against the whole token time, on an export of the shipped model (ONNX Runtime CPU, fp32).

    python benchmarks/host_overhead.py --engine EXPORT_DIR [--batches 1,8] [--reps 3] [--threads 1]

host share = (token time - time inside the backend's calls) / token time, measured twice:
- cpu: thread CPU time (`time.thread_time`) around the whole generation and around every
  backend call. With `--threads 1` ONNX Runtime computes on the calling thread, so this splits
  the work exactly and does not move when other processes load the machine (the reported number).
- wall: wall clock, the backend's share from its own clock (`Backend.stage_times()`, which
  leaves the backend's input copies to the host side); this one swings with the load.
Each batch size generates `--reps` batches (seeds 0..reps-1) after one untimed warm-up batch
and reports the median. Prints one JSON object.
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
    """Seconds inside the step graphs so far (per-call lists, or running stats with `.total`)."""
    times = backend.stage_times()
    picked = [times[stage] for stage in ("position_step", "content_step", "prefill") if stage in times]
    return sum(t.total if hasattr(t, "total") else sum(t) for t in picked)


class CpuClockedBackend:
    """The backend with the calling thread's CPU seconds spent inside its step calls counted."""

    def __init__(self, backend):
        self._backend, self.cpu_seconds = backend, 0.0

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def _clocked(self, fn, *args):
        t0 = time.thread_time()
        try:
            return fn(*args)
        finally:
            self.cpu_seconds += time.thread_time() - t0

    def begin(self, batch):
        return self._clocked(self._backend.begin, batch)

    def position_step(self, *args):
        return self._clocked(self._backend.position_step, *args)

    def content_step(self, *args):
        return self._clocked(self._backend.content_step, *args)

    def prefill(self, *args):
        return self._clocked(self._backend.prefill, *args)


def measure(engine: str, batch: int, reps: int, threads: int | None) -> dict:
    from dq_edge.runtime.session import open_runtime

    SamplingParams, generate_tokens = _generate()
    opened = open_runtime(engine, "ort-cpu", "fp32", threads=threads)
    backend, layout = CpuClockedBackend(opened.backend), opened.layout
    classes = None if layout.n_classes == 0 else [i % layout.n_classes for i in range(batch)]
    generate_tokens(backend, layout, batch, classes=classes, params=SamplingParams(seed=1000))  # warm-up
    cpu_shares, wall_shares, token_ms, host_us = [], [], [], []
    for seed in range(reps):
        graphs_before, backend_cpu_before = _graph_seconds(backend), backend.cpu_seconds
        t0, c0 = time.perf_counter(), time.thread_time()
        tokens = generate_tokens(backend, layout, batch, classes=classes, params=SamplingParams(seed=seed))
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        graphs, backend_cpu = _graph_seconds(backend) - graphs_before, backend.cpu_seconds - backend_cpu_before
        steps = int(tokens.lengths.max()) - 1
        cpu_shares.append((cpu - backend_cpu) / cpu)
        wall_shares.append((wall - graphs) / wall)
        token_ms.append(1e3 * wall / steps)
        host_us.append(1e6 * (cpu - backend_cpu) / steps)
    return {
        "batch": batch,
        "host_share_cpu_median": round(statistics.median(cpu_shares), 4),
        "host_share_cpu_all": [round(s, 4) for s in cpu_shares],
        "host_cpu_us_per_step_median": round(statistics.median(host_us), 1),
        "host_share_wall_median": round(statistics.median(wall_shares), 4),
        "host_share_wall_all": [round(s, 4) for s in wall_shares],
        "ms_per_step_wall_median": round(statistics.median(token_ms), 3),
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
