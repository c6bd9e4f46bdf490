"""scripts/gpu_device_check.py runs end to end against the simulated device and a CuPy stand-in
that reads the simulated memory by pointer (what CuPy's UnownedMemory does on a GPU). Proves the
script's own logic (expected values, cleanup, JSON), not CUDA: that needs a GPU."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
from engines_fakes import FakeDevice

from dq_edge import device as device_mod
from dq_edge import engines_probe
from dq_edge.errors import DQEdgeError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_device_check.py"


class CheckedDevice(FakeDevice):
    """FakeDevice plus the CUDA behaviours the script provokes: a pageable copy inside a capture
    is an error (cudaErrorStreamCaptureUnsupported) that invalidates the capture, a huge
    allocation fails with cudaErrorMemoryAllocation."""

    def _copy_allowed(self, name: str) -> None:
        if self.capturing:
            self.capture_invalidated = True
            raise DQEdgeError(f"CUDA error 900 cudaErrorStreamCaptureUnsupported ({name})", "")

    def d2d(self, dst, src, nbytes, stream):  # capturable: recorded into the graph
        if self.capturing:
            self.captured.append(lambda: self.view(dst, nbytes).__setitem__(slice(None), self.view(src, nbytes)))
            return
        super().d2d(dst, src, nbytes, stream)

    def alloc(self, nbytes):
        if nbytes > 1 << 40:
            raise DQEdgeError("CUDA error 2 cudaErrorMemoryAllocation: out of memory", "")
        return super().alloc(nbytes)


def _fake_cupy(dev: FakeDevice) -> types.ModuleType:
    cp = types.ModuleType("cupy")
    cp.__version__ = "fake"
    cuda = types.SimpleNamespace(
        UnownedMemory=lambda ptr, size, owner: (ptr, size),
        MemoryPointer=lambda mem, offset: mem[0] + offset,
    )
    cp.cuda = cuda
    cp.ndarray = lambda shape, dtype, ptr: dev.read(ptr, shape, dtype)
    cp.asnumpy = np.asarray
    return cp


def test_device_check_script_against_the_simulated_device(monkeypatch, capsys):
    dev = CheckedDevice(name="NVIDIA GeForce RTX 3090", cc=(8, 6))
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(dev))
    monkeypatch.setattr(device_mod, "CudaDevice", lambda index=0: dev)
    monkeypatch.setattr(engines_probe, "probe_cuda", lambda: engines_probe.CudaProbe("cuda-python", 1))
    spec = importlib.util.spec_from_file_location("gpu_device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rc = module.main()
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["ok"], [c for c in report["checks"] if not c["ok"]]
    assert [c["check"] for c in report["checks"]] == [
        "alloc_h2d_d2h", "pinned_staging_one_copy", "kv_row_copy_2d", "stream_events",
        "cuda_graph_capture_of_a_copy", "failed_capture_is_recovered", "cuda_error_named",
    ]
    assert "refused as expected" in report["checks"][5]["detail"]
    assert dev.live() == {"device": 0, "host": 0, "streams": 0, "events": 0, "graphs": 0}
