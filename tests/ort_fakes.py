"""A stand-in `onnxruntime` module whose CUDA / TensorRT providers follow ONNX Runtime's real
IO-binding semantics, on the simulated device of tests/engines_fakes.py.

What it models, with the source it follows (onnxruntime 1.18-1.22, same in 1.32):
- `IOBinding::BindInput` (onnxruntime/core/session/IOBinding.cc) calls
  `utils::CopyOneInputAcrossDevices` (onnxruntime/core/framework/utils.cc): a bound input on
  another device than its consumer is copied ONCE, at bind time, and that copy is what
  `run_with_iobinding` feeds. A host (cpu) OrtValue / `bind_cpu_input` / `bind_input(..., "cpu",
  ...)` on a GPU provider is therefore a snapshot; later writes to the host buffer are not seen
  (also microsoft/onnxruntime#29782: "unless the input is re-bound").
- Inputs bound on the device (`bind_input(name, "cuda", id, type, shape, ptr)` or a cuda
  OrtValue) are the device memory itself: read when the run executes.
- Outputs bound on the device are written there; outputs bound to host OrtValues are copied
  back into those host buffers at the end of `Run` (`utils::CopyOutputsAcrossDevices`).
- `ortvalue_from_shape_and_type(shape, type, "cuda", id)` allocates device memory;
  `update_inplace` copies host data into it (onnxruntime_pybind_ortvalue.cc).
The numbers come from real CPU sessions on the same ONNX files, so a stale input changes them.
"""

from __future__ import annotations

import ctypes
import types
from typing import Any

import numpy as np
import onnxruntime as real_ort

from engines_fakes import FakeDevice

GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


class FakeOrtValue:
    def __init__(self, device: FakeDevice | None, array: np.ndarray | None = None, ptr: int | None = None,
                 shape: tuple[int, ...] = (), dtype: Any = np.float32):
        self._device, self._array, self._ptr = device, array, ptr
        self._shape, self._dtype = tuple(shape), np.dtype(dtype)

    def device_name(self) -> str:
        return "cpu" if self._ptr is None else "cuda"

    def data_ptr(self) -> int:
        return self._array.ctypes.data if self._ptr is None else self._ptr

    def numpy(self) -> np.ndarray:
        if self._ptr is None:
            return self._array
        return self._device.read(self._ptr, self._shape, self._dtype)  # a device value: copied to the host

    def update_inplace(self, value: np.ndarray) -> None:
        if self._ptr is None:
            self._array[...] = value
        else:
            self._device.write(self._ptr, np.ascontiguousarray(value, dtype=self._dtype))

    def write(self, value: np.ndarray) -> None:
        self.update_inplace(value.reshape(self._shape if self._ptr is not None else self._array.shape))


def _ortvalue_class(device: FakeDevice) -> type:
    class OrtValue:
        @staticmethod
        def ortvalue_from_numpy(array: np.ndarray, device_type: str = "cpu", device_id: int = 0) -> FakeOrtValue:
            return FakeOrtValue(None, array)  # a cpu OrtValue over the numpy memory (no copy)

        @staticmethod
        def ortvalue_from_shape_and_type(shape, element_type, device_type: str = "cpu", device_id: int = 0) -> FakeOrtValue:
            dtype = np.dtype(element_type)
            if device_type == "cpu":
                return FakeOrtValue(None, np.zeros(shape, dtype))
            ptr = device.alloc(int(np.prod(shape)) * dtype.itemsize)
            return FakeOrtValue(device, ptr=ptr, shape=tuple(shape), dtype=dtype)

    return OrtValue


class FakeIOBinding:
    """`onnxruntime.IOBinding` of a session on a GPU provider (module docstring)."""

    def __init__(self, session: "FakeGpuSession"):
        self._s, self._dev = session, session.device
        self.inputs: dict[str, Any] = {}  # name -> np.ndarray snapshot | (ptr, shape, dtype) live
        self.outputs: dict[str, Any] = {}  # name -> FakeOrtValue (host) | (ptr, shape, dtype)

    # inputs
    def bind_ortvalue_input(self, name: str, value: FakeOrtValue) -> None:
        if value.device_name() == "cpu":
            self.inputs[name] = np.array(value.numpy(), copy=True)  # CopyOneInputAcrossDevices: snapshot
        else:
            self.inputs[name] = (value.data_ptr(), value._shape, value._dtype)

    def bind_cpu_input(self, name: str, array: np.ndarray) -> None:
        self.inputs[name] = np.array(array, copy=True)

    def bind_input(self, name: str, device_type: str, device_id: int, element_type: Any, shape: Any, buffer_ptr: int) -> None:
        dtype, shape = np.dtype(element_type), tuple(int(d) for d in shape)
        if device_type == "cpu":  # host memory wrapped in an OrtValue, then copied at bind time
            nbytes = int(np.prod(shape)) * dtype.itemsize
            raw = (ctypes.c_uint8 * nbytes).from_address(buffer_ptr)
            self.inputs[name] = np.frombuffer(raw, np.uint8).view(dtype).reshape(shape).copy()
        else:
            self._dev.view(buffer_ptr, int(np.prod(shape)) * dtype.itemsize)  # must be device memory
            self.inputs[name] = (buffer_ptr, shape, dtype)

    # outputs
    def bind_ortvalue_output(self, name: str, value: FakeOrtValue) -> None:
        self.outputs[name] = value if value.device_name() == "cpu" else (value.data_ptr(), value._shape, value._dtype)

    def bind_output(self, name: str, device_type: str = "cpu", device_id: int = 0, element_type: Any = None,
                    shape: Any = None, buffer_ptr: int | None = None) -> None:
        assert device_type == "cuda" and buffer_ptr is not None, "only pre-allocated device outputs are modelled"
        dtype, shape = np.dtype(element_type), tuple(int(d) for d in shape)
        self._dev.view(buffer_ptr, int(np.prod(shape)) * dtype.itemsize)
        self.outputs[name] = (buffer_ptr, shape, dtype)

    def feeds(self) -> dict[str, np.ndarray]:
        return {n: v if isinstance(v, np.ndarray) else self._dev.read(*v) for n, v in self.inputs.items()}

    def store(self, results: dict[str, np.ndarray]) -> None:
        for name, target in self.outputs.items():
            value = results[name]
            if isinstance(target, FakeOrtValue):
                target.write(value)  # CopyOutputsAcrossDevices at the end of Run
            else:
                ptr, shape, dtype = target
                assert value.shape == shape and value.dtype == dtype, (name, value.shape, shape, value.dtype, dtype)
                self._dev.write(ptr, value)


class FakeGpuSession:
    """An InferenceSession whose first provider is a GPU one; computes with a real CPU session."""

    def __init__(self, path: str, options: Any, providers: list, device: FakeDevice, runs: list):
        self.device, self._runs = device, runs
        self._cpu = real_ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self._providers = [p[0] if isinstance(p, tuple) else p for p in providers]
        self.provider_options = {p[0]: p[1] for p in providers if isinstance(p, tuple)}

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def get_outputs(self) -> list:
        return self._cpu.get_outputs()

    def get_inputs(self) -> list:
        return self._cpu.get_inputs()

    def io_binding(self) -> FakeIOBinding:
        return FakeIOBinding(self)

    def run(self, names, feeds):
        self._runs.append("run")
        return self._cpu.run(names, feeds)

    def run_with_iobinding(self, binding: FakeIOBinding) -> None:
        self._runs.append("run_with_iobinding")
        names = [o.name for o in self._cpu.get_outputs()]
        binding.store(dict(zip(names, self._cpu.run(names, binding.feeds()))))


def fake_gpu_ort(device: FakeDevice) -> types.SimpleNamespace:
    """What `onnxruntime-gpu` looks like on a GPU machine, over `device`."""
    runs: list[str] = []
    return types.SimpleNamespace(
        SessionOptions=real_ort.SessionOptions,
        GraphOptimizationLevel=real_ort.GraphOptimizationLevel,
        get_available_providers=lambda: list(GPU_PROVIDERS),
        InferenceSession=lambda path, options=None, providers=None: FakeGpuSession(path, options, providers, device, runs),
        OrtValue=_ortvalue_class(device),
        runs=runs,
    )
