"""What the numbers were measured on: CPU, cores, memory, thread settings and package versions.

Torch-free: torch's version is read from package metadata, never by importing it.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from importlib import metadata

from dq_edge.bench.floors import last_level_cache_bytes, usable_threads
from dq_edge.runtime.summary import cpu_model, peak_rss_mib, versions

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def memory_total_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_info() -> dict:
    info = {
        "cpu": cpu_model(),
        "cores_usable": usable_threads(),
        "cores_total": os.cpu_count(),
        "memory_bytes": memory_total_bytes(),
        "last_level_cache_bytes": last_level_cache_bytes(),
        "machine": platform.machine(),
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
        "versions": {**versions(), "torch": _package_version("torch"), "onnx": _package_version("onnx")},
    }
    info["versions"].pop("cpu", None)  # already at top level
    return info


def machine_slug(info: dict | None = None) -> str:
    """Short file-name-safe label, e.g. `intel-xeon-processor-2c` (host names in VMs say nothing)."""
    info = info or machine_info()
    cpu = re.sub(r"\((r|tm)\)", "", info["cpu"].lower())
    cpu = re.sub(r"[^a-z0-9]+", "-", cpu).strip("-")[:40]
    return f"{cpu}-{info['cores_usable']}c"


def utc_stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["machine_info", "machine_slug", "memory_total_bytes", "peak_rss_mib", "utc_stamp"]
