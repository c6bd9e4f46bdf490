"""The thin device layer the GPU backends talk to: memory, copies, streams, events, graphs.

Torch-free and TensorRT-free: the native TensorRT backend and the ONNX Runtime backend on its
CUDA / TensorRT providers (device-resident caches bound by pointer) both use it.

`CudaDevice` wraps cuda-python's runtime API (`from cuda.bindings import runtime` since
cuda-python 12.6; `from cuda import cudart` before). `PycudaDevice` is the same surface over
pycuda, for Jetson images that ship pycuda but not cuda-python (no CUDA-graph capture there).
The backend only calls the methods of `Device`, so tests substitute a fake that records calls.

Pointers are plain ints. Streams, events and graph handles are opaque objects of the
implementation; `stream_handle` turns a stream into the int TensorRT's `execute_async_v3` wants.
"""

from __future__ import annotations

import ctypes
import importlib.util
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dq_edge.errors import BackendUnavailableError, DQEdgeError


@dataclass
class HostBuffer:
    """Page-locked host memory seen as a numpy array.

    `device_ptr` is set for mapped (zero-copy) memory: on Jetson the GPU shares DRAM with the
    CPU, so an engine can write its output straight into this buffer; no device twin, no copy.
    """

    array: np.ndarray
    host_ptr: int
    device_ptr: int | None = None


class Device(Protocol):
    name: str
    compute_capability: tuple[int, int]
    integrated: bool  # True on Jetson (unified memory)

    def alloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def alloc_host(self, shape: tuple[int, ...], dtype: Any, mapped: bool = False) -> HostBuffer: ...
    def free_host(self, buf: HostBuffer) -> None: ...
    def create_stream(self) -> Any: ...
    def stream_handle(self, stream: Any) -> int: ...
    def h2d(self, dst: int, src: np.ndarray, stream: Any) -> None: ...
    def d2h(self, dst: np.ndarray, src: int, stream: Any) -> None: ...
    def d2d(self, dst: int, src: int, nbytes: int, stream: Any) -> None: ...
    def copy_2d(self, dst: int, dpitch: int, src: int, spitch: int, width: int, height: int, stream: Any) -> None: ...
    def memset(self, ptr: int, value: int, nbytes: int, stream: Any) -> None: ...
    def create_event(self) -> Any: ...
    def record(self, event: Any, stream: Any) -> None: ...
    def elapsed_s(self, start: Any, end: Any) -> float: ...
    def synchronize(self, stream: Any) -> None: ...
    def begin_capture(self, stream: Any) -> None: ...
    def end_capture(self, stream: Any) -> Any: ...
    def abort_capture(self, stream: Any) -> None: ...
    def launch(self, graph_exec: Any, stream: Any) -> None: ...
    def destroy_graph(self, graph_exec: Any) -> None: ...
    def destroy_stream(self, stream: Any) -> None: ...
    def destroy_event(self, event: Any) -> None: ...

    can_capture: bool  # False where the layer cannot capture CUDA graphs (pycuda)


def _host_array(ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = (ctypes.c_uint8 * nbytes).from_address(ptr)
    return np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape)


def import_cudart() -> Any:
    """cuda-python's runtime module under its new (>= 12.6) or old name."""
    try:
        from cuda.bindings import runtime  # noqa: PLC0415

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart  # noqa: PLC0415

        return cudart
    except ImportError as exc:
        raise BackendUnavailableError(
            "cuda-python is not installed",
            "pip install 'dq-edge[cuda12]' (or 'cuda-python>=12.6,<13'; Jetson JetPack 6: 'cuda-python==12.6.*')",
        ) from exc


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def describe_cuda_error(rt: Any, err: Any) -> str:
    """`35 cudaErrorInsufficientDriver: CUDA driver version is insufficient ...` for an error
    code of cuda-python's runtime (its functions return `(cudaError_t, *values)`)."""
    parts = [str(int(err))]
    for getter in ("cudaGetErrorName", "cudaGetErrorString"):
        try:
            code, text = getattr(rt, getter)(err)
            parts.append(_text(text))
        except Exception:  # noqa: BLE001 - a description must never hide the error itself
            continue
    return parts[0] + (" " + ": ".join(parts[1:]) if len(parts) > 1 else "")


INSUFFICIENT_DRIVER, NO_DEVICE = 35, 100  # cudaErrorInsufficientDriver, cudaErrorNoDevice


def cuda_error_hint(code: int) -> str:
    if code == INSUFFICIENT_DRIVER:
        return ("the NVIDIA driver is older than this cuda-python's CUDA major: install the extra that "
                "matches the driver (dq-edge[cuda12] for CUDA 12 drivers and JetPack 6) or update the driver")
    return "check the GPU with `nvidia-smi` (or `tegrastats` on Jetson)"


class CudaDevice:
    """cuda-python implementation of `Device` on device `index` (current thread's context)."""

    can_capture = True

    def __init__(self, index: int = 0):
        self._rt = rt = import_cudart()
        self._call(rt.cudaSetDevice(index))
        props = self._call(rt.cudaGetDeviceProperties(index))
        raw_name = props.name
        self.name = (raw_name.decode(errors="replace") if isinstance(raw_name, bytes) else str(raw_name)).rstrip("\x00")
        self.compute_capability = (int(props.major), int(props.minor))
        self.integrated = bool(props.integrated)
        self._d2d = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice

    def _call(self, result: Any) -> Any:
        """cuda-python returns (err, *values); raise on err, unwrap the values."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise DQEdgeError(f"CUDA error {describe_cuda_error(self._rt, err)}", cuda_error_hint(int(err)))
        return values[0] if len(values) == 1 else tuple(values) if values else None

    def alloc(self, nbytes: int) -> int:
        return int(self._call(self._rt.cudaMalloc(max(nbytes, 1))))

    def free(self, ptr: int) -> None:
        self._call(self._rt.cudaFree(ptr))

    def alloc_host(self, shape: tuple[int, ...], dtype: Any, mapped: bool = False) -> HostBuffer:
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        if mapped:
            ptr = int(self._call(self._rt.cudaHostAlloc(nbytes, self._rt.cudaHostAllocMapped)))
            dptr = int(self._call(self._rt.cudaHostGetDevicePointer(ptr, 0)))
            return HostBuffer(_host_array(ptr, shape, dtype), ptr, dptr)
        ptr = int(self._call(self._rt.cudaMallocHost(nbytes)))
        return HostBuffer(_host_array(ptr, shape, dtype), ptr)

    def free_host(self, buf: HostBuffer) -> None:
        self._call(self._rt.cudaFreeHost(buf.host_ptr))

    def create_stream(self) -> Any:
        return self._call(self._rt.cudaStreamCreateWithFlags(self._rt.cudaStreamNonBlocking))

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def h2d(self, dst: int, src: np.ndarray, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self._rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream))

    def d2h(self, dst: np.ndarray, src: int, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self._rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream))

    def d2d(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._call(self._rt.cudaMemcpyAsync(dst, src, nbytes, self._d2d, stream))

    def copy_2d(self, dst: int, dpitch: int, src: int, spitch: int, width: int, height: int, stream: Any) -> None:
        self._call(self._rt.cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, self._d2d, stream))

    def memset(self, ptr: int, value: int, nbytes: int, stream: Any) -> None:
        self._call(self._rt.cudaMemsetAsync(ptr, value, nbytes, stream))

    def create_event(self) -> Any:
        return self._call(self._rt.cudaEventCreate())

    def record(self, event: Any, stream: Any) -> None:
        self._call(self._rt.cudaEventRecord(event, stream))

    def elapsed_s(self, start: Any, end: Any) -> float:
        self._call(self._rt.cudaEventSynchronize(end))
        return float(self._call(self._rt.cudaEventElapsedTime(start, end))) / 1000.0

    def synchronize(self, stream: Any) -> None:
        self._call(self._rt.cudaStreamSynchronize(stream))

    def begin_capture(self, stream: Any) -> None:
        # thread-local, as trtexec (TensorRT samples/common/sampleDevice.h, TrtCudaGraph::beginCapture):
        # an unsafe CUDA call of another thread (ORT, Polygraphy) cannot invalidate our capture
        mode = self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call(self._rt.cudaStreamBeginCapture(stream, mode))

    def end_capture(self, stream: Any) -> Any:
        graph = self._call(self._rt.cudaStreamEndCapture(stream))
        try:
            graph_exec = self._call(self._rt.cudaGraphInstantiate(graph, 0))
        finally:
            self._rt.cudaGraphDestroy(graph)  # the executable graph keeps what it needs
        return graph_exec

    def abort_capture(self, stream: Any) -> None:
        """End a failed capture and clear the sticky capture error (trtexec's endCaptureOnError,
        TensorRT samples/common/sampleInference.cpp): the stream is usable again afterwards."""
        err, capturing = self._rt.cudaStreamIsCapturing(stream)
        if int(err) == 0 and int(capturing) != int(self._rt.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone):
            err, graph = self._rt.cudaStreamEndCapture(stream)
            if graph is not None and int(err) == 0:
                self._rt.cudaGraphDestroy(graph)
        self._rt.cudaGetLastError()  # resets the error the failed capture left

    def destroy_stream(self, stream: Any) -> None:
        self._call(self._rt.cudaStreamDestroy(stream))

    def destroy_event(self, event: Any) -> None:
        self._call(self._rt.cudaEventDestroy(event))

    def launch(self, graph_exec: Any, stream: Any) -> None:
        self._call(self._rt.cudaGraphLaunch(graph_exec, stream))

    def destroy_graph(self, graph_exec: Any) -> None:
        self._call(self._rt.cudaGraphExecDestroy(graph_exec))


class PycudaDevice:
    """pycuda implementation of `Device` (no CUDA-graph capture: use cuda-python for that)."""

    can_capture = False

    def __init__(self, index: int = 0):
        import pycuda.autoinit  # noqa: F401, PLC0415 - creates the context on device 0
        import pycuda.driver as cuda  # noqa: PLC0415

        self._cuda = cuda
        dev = cuda.Device(index)
        self.name = dev.name()
        self.compute_capability = tuple(dev.compute_capability())
        self.integrated = bool(dev.get_attribute(cuda.device_attribute.INTEGRATED))
        self._keep: dict[int, Any] = {}  # pycuda frees allocations when their objects die

    def alloc(self, nbytes: int) -> int:
        mem = self._cuda.mem_alloc(max(nbytes, 1))
        self._keep[int(mem)] = mem
        return int(mem)

    def free(self, ptr: int) -> None:
        self._keep.pop(ptr).free()

    def alloc_host(self, shape: tuple[int, ...], dtype: Any, mapped: bool = False) -> HostBuffer:
        flags = self._cuda.host_alloc_flags.DEVICEMAP if mapped else 0
        arr = self._cuda.pagelocked_empty(shape, dtype, mem_flags=flags)
        host_ptr = arr.ctypes.data
        self._keep[host_ptr] = arr
        dptr = int(arr.base.get_device_pointer()) if mapped else None
        return HostBuffer(arr, host_ptr, dptr)

    def free_host(self, buf: HostBuffer) -> None:
        self._keep.pop(buf.host_ptr, None)

    def create_stream(self) -> Any:
        return self._cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def h2d(self, dst: int, src: np.ndarray, stream: Any) -> None:
        # pycuda's async copy wants page-locked sources; token ids are tiny pageable arrays, and
        # pycuda streams are blocking, so a synchronous copy is ordered before the next launch
        self._cuda.memcpy_htod(dst, src)

    def d2h(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self._cuda.memcpy_dtoh_async(dst, src, stream)

    def d2d(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._cuda.memcpy_dtod_async(dst, src, nbytes, stream)

    def copy_2d(self, dst: int, dpitch: int, src: int, spitch: int, width: int, height: int, stream: Any) -> None:
        copy = self._cuda.Memcpy2D()
        copy.set_src_device(src)
        copy.set_dst_device(dst)
        copy.src_pitch, copy.dst_pitch, copy.width_in_bytes, copy.height = spitch, dpitch, width, height
        copy(stream)

    def memset(self, ptr: int, value: int, nbytes: int, stream: Any) -> None:
        self._cuda.memset_d8_async(ptr, value, nbytes, stream)

    def create_event(self) -> Any:
        return self._cuda.Event()

    def record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def elapsed_s(self, start: Any, end: Any) -> float:
        end.synchronize()
        return end.time_since(start) / 1000.0

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def _no_graphs(self, *_: Any) -> Any:
        raise BackendUnavailableError("CUDA-graph capture needs cuda-python", "pip install cuda-python, or run without CUDA graphs")

    begin_capture = end_capture = launch = destroy_graph = abort_capture = _no_graphs

    def destroy_stream(self, stream: Any) -> None:
        pass  # pycuda streams and events are freed with their Python objects

    def destroy_event(self, event: Any) -> None:
        pass


def cuda_python_installed() -> bool:
    try:
        return importlib.util.find_spec("cuda.bindings") is not None or importlib.util.find_spec("cuda.cudart") is not None
    except (ImportError, ValueError):  # `cuda` is not a package here
        return False


def open_device(index: int = 0) -> Device:
    """cuda-python when installed, else pycuda; a clear error when neither is."""
    if cuda_python_installed():
        return CudaDevice(index)
    if importlib.util.find_spec("pycuda") is not None:
        return PycudaDevice(index)
    raise BackendUnavailableError(
        "neither cuda-python nor pycuda is installed",
        "pip install 'dq-edge[cuda12]' (cuda-python 12; '[cuda13]' for R580+ drivers), or run on CPU with the ort-cpu backend",
    )
