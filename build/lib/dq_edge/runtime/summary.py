"""summary.json of a `dq-edge run`: what was generated, how fast, on what (torch-free)."""

from __future__ import annotations

import platform
import resource
import sys
from importlib import metadata
from typing import Any, Mapping

import numpy as np

from dq_edge import __version__
from dq_edge.runtime.timing import StageStats


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    ort = _version("onnxruntime") or _version("onnxruntime-gpu")
    return {
        "dq_edge": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort,
        "tensorrt": _version("tensorrt"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
    }


def stage_stats(stage_times: Mapping[str, StageStats]) -> dict[str, dict[str, float]]:
    """Per stage: number of calls, total seconds, mean / p50 / p90 milliseconds per call, and the
    first call apart (ONNX Runtime and TensorRT do one-time work there). Percentiles are exact up
    to the backend's reservoir size, a uniform sample of the calls beyond it."""
    stats = {}
    for stage, s in stage_times.items():
        if not s.count:
            continue
        stats[stage] = {
            "calls": s.count,
            "total_s": round(s.total, 6),
            "mean_ms": round(s.mean * 1e3, 4),
            "p50_ms": round(s.percentile(50) * 1e3, 4),
            "p90_ms": round(s.percentile(90) * 1e3, 4),
            "first_ms": round(float(s.first) * 1e3, 4),
            "percentiles_exact": s.exact,
        }
    return stats


def build_summary(
    *,
    backend: str,
    backend_reason: str,
    precision: str,
    engine: str,
    grains: np.ndarray,
    lengths: np.ndarray,
    n_codes: np.ndarray,
    stage_times: Mapping[str, StageStats],
    wall_seconds: float,
    batch: int,
    sampling: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`grains` int [N, Hc, Wc] (1 = fine), `lengths` sequence lengths [N] (incl. start/EOS
    tokens), `n_codes` code tokens per image [N] (coarse codes + fine codes)."""
    count = int(grains.shape[0])
    fine_ratio = grains.reshape(count, -1).mean(axis=1) if count else np.zeros(0)  # [N]
    return {
        "images": count,
        "batch": batch,
        "backend": backend,
        "backend_reason": backend_reason,
        "precision": precision,
        "engine": engine,
        "tokens_per_image": [int(n) for n in n_codes],
        "sequence_lengths": [int(n) for n in lengths],
        "mean_tokens_per_image": round(float(np.mean(n_codes)), 3) if count else 0.0,
        "fine_ratio_per_image": [round(float(r), 4) for r in fine_ratio],
        "mean_fine_ratio": round(float(fine_ratio.mean()), 4) if count else 0.0,
        "wall_seconds": round(wall_seconds, 4),
        "images_per_second": round(count / wall_seconds, 4) if wall_seconds > 0 else None,
        "stages": stage_stats(stage_times),
        "peak_rss_mib": peak_rss_mib(),
        "sampling": sampling,
        "versions": versions(),
        **(extra or {}),
    }
