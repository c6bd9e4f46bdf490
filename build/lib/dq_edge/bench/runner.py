"""`dq-edge bench` without the terminal: open the runtime for each precision, bench every batch
size, and return one JSON-ready dict (machine, versions, command settings, results)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from dq_edge.bench.machine import machine_info, peak_rss_mib, utc_stamp
from dq_edge.bench.stages import BenchSettings, bench_backend


def resolve_folder(engine: Path | None, precision: str | None) -> Path:
    """Export/engine folder to bench: as given, or (like `dq-edge run`) a model folder or the
    shipped model exported once into the cache."""
    from dq_edge.cli.first_use_export import resolve_engine_folder  # noqa: PLC0415

    return resolve_engine_folder(engine, precision)[0]


def device_used_bytes() -> int | None:
    """Bytes in use on CUDA device 0 (cudaMemGetInfo), None without cuda-python or a GPU."""
    from dq_edge.engines_probe import cuda_device_count

    if cuda_device_count() == 0:
        return None
    try:
        try:
            from cuda.bindings import runtime as cudart  # noqa: PLC0415
        except ImportError:
            from cuda import cudart  # noqa: PLC0415
        err, free, total = cudart.cudaMemGetInfo()
    except Exception:  # noqa: BLE001 - a failed probe only drops the number
        return None
    return int(total) - int(free) if int(err) == 0 else None


def _device_memory(before: int | None) -> dict | None:
    """Device memory the opened backend holds (engines, caches, buffers) ; None on CPU-only machines."""
    after = device_used_bytes()
    if before is None or after is None:
        return None
    return {"opened_bytes": after - before, "note": "cudaMemGetInfo delta after opening the backend (whole device)"}


def run_bench(
    engine: Path | None,
    backend: str,
    precisions: list[str | None],
    batch_sizes: list[int],
    num: int,
    warmup: int,
    fine_ratio: float,
    threads: int | None,
    progress: Callable[[str], None] | None = None,
    cuda_graph: bool = False,
) -> dict:
    from dq_edge.runtime.session import open_runtime  # noqa: PLC0415

    say = progress or (lambda _msg: None)
    settings = BenchSettings(warmup=warmup, reps=num)
    runs = []
    for precision in precisions:
        opened = time.perf_counter()
        folder = resolve_folder(engine, precision)
        used_before = device_used_bytes()
        rt = open_runtime(folder, backend, precision, threads=threads, max_batch=max(batch_sizes), cuda_graph=cuda_graph)
        open_seconds = time.perf_counter() - opened
        say(f"{rt.backend.name} {rt.precision}: {rt.reason}")
        memory = _device_memory(used_before)
        runs.append(
            {
                "folder": str(folder),
                "backend": rt.backend.name,
                "precision": rt.precision,
                "reason": rt.reason,
                "skipped": rt.skipped,
                "open_seconds": round(open_seconds, 3),
                "dims": rt.backend.dims.to_dict(),
                "batches": bench_backend(rt.backend, batch_sizes, settings, fine_ratio=fine_ratio),
                "device_memory": memory,
            }
        )
        del rt
    return {
        "kind": "dq-edge-bench",
        "created": utc_stamp(),
        "settings": {"batch_sizes": batch_sizes, "num": num, "warmup": warmup, "fine_ratio": fine_ratio, "threads": threads, "cuda_graph": cuda_graph},
        "machine": machine_info(),
        "runs": runs,
        "peak_rss_mib": peak_rss_mib(),
    }
