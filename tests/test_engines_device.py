"""The cuda-python device layer without a GPU: every runtime API it calls exists in the installed
cuda-python (names and enum members), and opening a device fails with one clear error.

Skips when cuda-python is not installed (it is in the `dev` extra). Whether the calls do the
right thing on a GPU is covered by tests/test_engines_gpu.py.
"""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

from dq_edge import device as device_mod
from dq_edge.device import _host_array  # noqa: E402
from dq_edge.errors import DQEdgeError

cudart = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python >= 12.6 is not installed")


def _runtime_chains(cls: type) -> set[tuple[str, ...]]:
    """Attribute chains read from `self._rt` in a class body, e.g. ("cudaMemcpyKind", "cudaMemcpyDeviceToDevice")."""
    chains = set()
    for node in ast.walk(ast.parse(inspect.getsource(cls))):
        if isinstance(node, ast.Attribute):
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            parts.reverse()
            if isinstance(cur, ast.Name) and cur.id == "self" and parts[0] == "_rt" and len(parts) > 1:
                chains.add(tuple(parts[1:]))
    return chains


def test_every_runtime_call_exists_in_cuda_python():
    chains = _runtime_chains(device_mod.CudaDevice)
    assert {("cudaMalloc",), ("cudaMemcpy2DAsync",), ("cudaGraphInstantiate",)} <= chains
    missing = []
    for chain in chains:
        obj = cudart
        for part in chain:
            if not hasattr(obj, part):
                missing.append(".".join(chain))
                break
            obj = getattr(obj, part)
    assert not missing, missing


@pytest.mark.parametrize(
    "name,params",
    [
        ("cudaMemcpy2DAsync", ["dst", "dpitch", "src", "spitch", "width", "height", "kind", "stream"]),
        ("cudaMemcpyAsync", ["dst", "src", "count", "kind", "stream"]),
        ("cudaGraphInstantiate", ["graph", "flags"]),
        ("cudaStreamBeginCapture", ["stream", "mode"]),
        ("cudaHostGetDevicePointer", ["pHost", "flags"]),
    ],
)
def test_argument_order_matches_the_calls(name, params):
    first_line = getattr(cudart, name).__doc__.splitlines()[0]  # e.g. "cudaMemcpyAsync(dst, src, size_t count, ...)"
    names = [a.strip().split(":")[0].split()[-1] for a in first_line[first_line.index("(") + 1 : first_line.rindex(")")].split(",")]
    assert names == params


def test_opening_a_device_without_gpu_is_one_clear_error():
    err, count = cudart.cudaGetDeviceCount()
    if int(err) == 0 and count > 0:
        pytest.skip("a CUDA device is present; tests/test_engines_gpu.py covers it")
    with pytest.raises(DQEdgeError, match="CUDA error"):
        device_mod.CudaDevice()


def test_host_array_views_the_given_memory():
    backing = np.arange(12, dtype=np.float32)
    view = _host_array(backing.ctypes.data, (3, 4), np.float32)
    view[1, 2] = -1
    assert backing[6] == -1 and view.shape == (3, 4)


def test_a_cuda_error_is_reported_as_itself(monkeypatch):
    """Audit M1: cudaGetDeviceCount's error (35 = insufficient driver, what cuda-python 13 returns
    on a CUDA 12 driver) is named, not folded into "no device"."""
    from dq_edge import engines_probe

    monkeypatch.setattr(cudart, "cudaGetDeviceCount", lambda: (cudart.cudaError_t(35), None))
    reason = engines_probe.cuda_unavailable_reason()
    assert "35 cudaErrorInsufficientDriver" in reason and "no CUDA device" not in reason
    assert engines_probe.cuda_device_count() == 0
    dev = device_mod.CudaDevice.__new__(device_mod.CudaDevice)
    dev._rt = cudart
    err = pytest.raises(DQEdgeError, dev._call, (cudart.cudaError_t(35),))
    assert "cudaErrorInsufficientDriver" in str(err.value) and "cuda12" in err.value.hint


def _fake_pycuda(monkeypatch, devices: int) -> None:
    """A pycuda-only machine (JetPack image with pycuda, no cuda-python): pycuda.driver as in
    pycuda's documented API (init, Device(i).name/compute_capability/get_attribute, Device.count)."""
    import importlib.machinery
    import sys
    import types

    pkg = types.ModuleType("pycuda")
    pkg.__spec__ = importlib.machinery.ModuleSpec("pycuda", None, is_package=True)
    drv = types.ModuleType("pycuda.driver")

    class Device:
        def __init__(self, index):
            self.index = index

        @staticmethod
        def count():
            return devices

        def name(self):
            return "Orin"

        def compute_capability(self):
            return (8, 7)

        def get_attribute(self, attribute):
            return 1

    drv.Device, drv.Error, drv.init = Device, RuntimeError, lambda: None
    drv.device_attribute = types.SimpleNamespace(INTEGRATED="integrated")
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setitem(sys.modules, "pycuda.autoinit", types.ModuleType("pycuda.autoinit"))
    monkeypatch.setattr(device_mod, "cuda_python_installed", lambda: False)


def test_pycuda_only_machines_reach_the_pycuda_device(monkeypatch):
    """Audit M1: without cuda-python, the probe and open_device() use pycuda."""
    from dq_edge import engines_probe

    _fake_pycuda(monkeypatch, devices=1)
    assert engines_probe.probe_cuda() == engines_probe.CudaProbe("pycuda", 1)
    assert engines_probe.cuda_unavailable_reason() is None
    dev = device_mod.open_device()
    assert isinstance(dev, device_mod.PycudaDevice) and dev.integrated and not dev.can_capture
    _fake_pycuda(monkeypatch, devices=0)
    assert "pycuda reports 0 devices" in engines_probe.cuda_unavailable_reason()


def test_capture_is_thread_local_and_cleans_up(monkeypatch):
    """trtexec's capture mode (sampleDevice.h: cudaStreamCaptureModeThreadLocal); a failed
    instantiate still destroys the captured graph; abort ends a capture and clears the error."""
    calls = []

    class Rt:
        cudaStreamCaptureMode = cudart.cudaStreamCaptureMode
        cudaStreamCaptureStatus = cudart.cudaStreamCaptureStatus
        cudaGetErrorName = cudart.cudaGetErrorName
        cudaGetErrorString = cudart.cudaGetErrorString

        def cudaStreamBeginCapture(self, stream, mode):
            calls.append(("begin", mode))
            return (cudart.cudaError_t(0),)

        def cudaStreamEndCapture(self, stream):
            calls.append("end")
            return (cudart.cudaError_t(0), "graph")

        def cudaGraphInstantiate(self, graph, flags):
            return (cudart.cudaError_t(1), None)  # instantiate fails

        def cudaGraphDestroy(self, graph):
            calls.append(("destroy", graph))
            return (cudart.cudaError_t(0),)

        def cudaStreamIsCapturing(self, stream):
            return (cudart.cudaError_t(0), cudart.cudaStreamCaptureStatus.cudaStreamCaptureStatusInvalidated)

        def cudaGetLastError(self):
            calls.append("clear")
            return (cudart.cudaError_t(0),)

    dev = device_mod.CudaDevice.__new__(device_mod.CudaDevice)
    dev._rt = Rt()
    dev.begin_capture("s")
    assert calls[0] == ("begin", cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    with pytest.raises(DQEdgeError):
        dev.end_capture("s")
    assert ("destroy", "graph") in calls
    calls.clear()
    dev.abort_capture("s")
    assert calls == ["end", ("destroy", "graph"), "clear"]
