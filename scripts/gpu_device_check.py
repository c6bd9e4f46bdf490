"""Device-layer check for a GPU machine WITHOUT TensorRT: needs cuda-python and CuPy only.

Exercises dq_edge.device.CudaDevice the way the ONNX Runtime and TensorRT backends use it, and
checks every result independently with CuPy (which reads the same device memory by pointer):
allocation, host<->device copies, the pinned staging buffer, the pitched K/V row copy, streams
and events, a CUDA-graph capture of a copy (replayed after the source changed), recovery from a
failed capture, and CUDA errors reported by name. Prints one JSON object; exit 1 if a check fails.

    python scripts/gpu_device_check.py > device_check.json
"""

from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

RESULTS: list[dict[str, Any]] = []


def check(name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator that RUNS the check at once and records its outcome (one entry per check)."""

    def wrap(fn: Callable[[], Any]) -> Callable[[], Any]:
        start = time.perf_counter()
        try:
            detail = fn()
            RESULTS.append({"check": name, "ok": True, "detail": detail, "seconds": round(time.perf_counter() - start, 4)})
        except Exception as exc:  # noqa: BLE001 - a failed check is reported, the others still run
            RESULTS.append({"check": name, "ok": False, "detail": f"{type(exc).__name__}: {exc}",
                            "trace": traceback.format_exc(limit=3), "seconds": round(time.perf_counter() - start, 4)})
        return fn

    return wrap


def main() -> int:
    import cupy as cp

    from dq_edge.device import CudaDevice
    from dq_edge.engines_probe import probe_cuda
    from dq_edge.errors import DQEdgeError
    from dq_edge.graph_io import GraphDims, row_copy_geometry

    report: dict[str, Any] = {"python": platform.python_version(), "cupy": cp.__version__}
    probe = probe_cuda()
    report["probe"] = {"layer": probe.layer, "devices": probe.devices, "error": probe.error}
    if probe.devices == 0:
        report["ok"] = False
        print(json.dumps(report, indent=2))
        return 1
    dev = CudaDevice(0)
    report["device"] = {"name": dev.name, "compute_capability": list(dev.compute_capability), "integrated": dev.integrated}
    stream = dev.create_stream()

    def on_device(ptr: int, nbytes: int, dtype: Any) -> np.ndarray:
        """What CuPy sees at `ptr`: an independent reader of the same device memory."""
        mem = cp.cuda.UnownedMemory(ptr, nbytes, owner=None)
        return cp.asnumpy(cp.ndarray((nbytes // np.dtype(dtype).itemsize,), dtype, cp.cuda.MemoryPointer(mem, 0)))

    @check("alloc_h2d_d2h")
    def _() -> str:
        src = np.arange(1 << 20, dtype=np.float32)
        ptr = dev.alloc(src.nbytes)
        dev.h2d(ptr, src, stream)
        dev.synchronize(stream)
        assert np.array_equal(on_device(ptr, src.nbytes, np.float32), src), "CuPy reads other bytes than were copied"
        back = np.empty_like(src)
        dev.d2h(back, ptr, stream)
        dev.synchronize(stream)
        dev.free(ptr)
        assert np.array_equal(back, src)
        return f"{src.nbytes} bytes round trip"

    @check("pinned_staging_one_copy")
    def _() -> str:
        stage = dev.alloc_host((3 * 8 + 1,), np.int64)  # content/position/segment for batch 8 + step
        stage.array[:] = np.arange(25)
        ptr = dev.alloc(stage.array.nbytes)
        dev.h2d(ptr, stage.array, stream)
        dev.synchronize(stream)
        ok = np.array_equal(on_device(ptr, stage.array.nbytes, np.int64), np.arange(25))
        dev.free(ptr)
        dev.free_host(stage)
        assert ok
        return "25 int64 through one pinned copy"

    @check("kv_row_copy_2d")
    def _() -> str:
        dims = GraphDims(64, 4, (2, 2), (4, 4), "feature", 32, 4, 1, 1, 20, 10, 10)  # heads 4, D 8, L 20
        b, H, L, D = 3, dims.heads, dims.max_length, dims.head_dim
        cache = dev.alloc(b * H * L * D * 2)
        dev.memset(cache, 0, b * H * L * D * 2, stream)
        rows = (np.arange(b * H * D, dtype=np.float16).reshape(b, H, 1, D) + 1)
        src = dev.alloc(rows.nbytes)
        dev.h2d(src, rows, stream)
        g = row_copy_geometry(dims, 2, b, 7, 1)
        dev.copy_2d(cache + g["dst_offset"], g["dpitch"], src, g["spitch"], g["width"], g["height"], stream)
        dev.synchronize(stream)
        got = on_device(cache, b * H * L * D * 2, np.float16).reshape(b, H, L, D)
        expected = np.zeros((b, H, L, D), np.float16)
        expected[:, :, 7:8] = rows
        dev.free(cache)
        dev.free(src)
        assert np.array_equal(got, expected), "row landed elsewhere"
        return "row 7 of [3, 4, 20, 8] fp16"

    @check("stream_events")
    def _() -> str:
        start, end = dev.create_event(), dev.create_event()
        ptr = dev.alloc(64 << 20)
        dev.record(start, stream)
        dev.memset(ptr, 1, 64 << 20, stream)
        dev.record(end, stream)
        ms = dev.elapsed_s(start, end) * 1e3
        dev.free(ptr)
        dev.destroy_event(start)
        dev.destroy_event(end)
        assert ms >= 0
        return f"memset 64 MiB: {ms:.3f} ms (event time)"

    @check("cuda_graph_capture_of_a_copy")
    def _() -> str:
        n = 4096
        a, b = dev.alloc(n * 4), dev.alloc(n * 4)
        host = dev.alloc_host((n,), np.float32)
        host.array[:] = 1.0
        dev.h2d(a, host.array, stream)
        dev.synchronize(stream)
        dev.begin_capture(stream)
        dev.d2d(b, a, n * 4, stream)  # device-to-device copies are capturable
        graph = dev.end_capture(stream)
        host.array[:] = 2.0
        dev.h2d(a, host.array, stream)  # outside the graph, before the launch: the graph reads it at replay
        dev.launch(graph, stream)
        dev.synchronize(stream)
        got = on_device(b, n * 4, np.float32)
        dev.destroy_graph(graph)
        dev.free(a)
        dev.free(b)
        dev.free_host(host)
        assert np.all(got == 2.0), "the replay did not read the memory at launch time"
        return "captured d2d replayed with new source data"

    @check("failed_capture_is_recovered")
    def _() -> str:
        pageable = np.ones(1024, np.float32)  # a pageable H2D inside a capture is not capturable
        ptr = dev.alloc(pageable.nbytes)
        dev.begin_capture(stream)
        try:
            dev.h2d(ptr, pageable, stream)
            dev.end_capture(stream)
            outcome = "the runtime accepted a pageable copy in capture"
        except DQEdgeError as exc:
            outcome = f"refused as expected: {exc}"
        dev.abort_capture(stream)
        dev.h2d(ptr, pageable, stream)  # the stream works again
        dev.synchronize(stream)
        ok = np.array_equal(on_device(ptr, pageable.nbytes, np.float32), pageable)
        dev.free(ptr)
        assert ok, "stream unusable after abort_capture"
        return outcome

    @check("cuda_error_named")
    def _() -> str:
        try:
            dev.alloc(1 << 60)
        except DQEdgeError as exc:
            assert "cudaErrorMemoryAllocation" in str(exc), str(exc)
            return str(exc)
        raise AssertionError("a 1 EiB allocation succeeded")

    dev.destroy_stream(stream)
    report["checks"] = RESULTS
    report["ok"] = all(r["ok"] for r in RESULTS)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
