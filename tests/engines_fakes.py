"""Test doubles for the TensorRT backend: a simulated device and engines that run numpy.

What they prove: the backend's call sequence and memory bookkeeping (allocations, addresses,
row offsets of K/V copies, which buffers cross to the host, what happens inside a CUDA-graph
capture). `FakeDevice` really moves bytes (pitched 2-D copies included), and `FakeContext`
reads its inputs from the addresses it was given, so a wrong offset or a stale buffer changes
the numbers. They prove nothing about TensorRT or CUDA themselves: the GPU tests do that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dq_edge.atomic import sha256_file
from dq_edge.device import HostBuffer
from dq_edge.engines.manifest import engine_entry, make_manifest, write_manifest
from dq_edge.engines.plan import BuildOptions, ExportSource, GpuTarget, make_plan, network_typing
from dq_edge.graph_io import GraphDims, GraphSpec
from dq_edge.tokens import TokenLayout

LAYOUT = TokenLayout(n_codes=16, coarse_hw=(2, 2), fine_hw=(4, 4))
DIMS = GraphDims(
    image_size=16, z_channels=4, coarse_hw=(2, 2), fine_hw=(4, 4), router="feature", width=8, heads=2,
    position_layers=1, content_layers=2, max_length=LAYOUT.max_length,
    content_vocab=LAYOUT.content_vocab, position_vocab=LAYOUT.position_vocab(1),
)
TARGET = GpuTarget("10.3.0.30", "Orin", (8, 7))
GRAPHS = ("encoder", "dgc", "decoder", "transformer_position_step", "transformer_content_step", "transformer_prefill")


def fake_export(folder: Path, precision: str = "fp32", max_batch: int = 4, graphs: tuple[str, ...] = GRAPHS) -> ExportSource:
    folder.mkdir(parents=True, exist_ok=True)
    files, digests = {}, {}
    for g in graphs:
        path = folder / f"{g}.{precision}.onnx"
        path.write_bytes(f"not really onnx: {g}".encode())
        files[g], digests[g] = path, sha256_file(path)
    return ExportSource(folder, precision, DIMS, LAYOUT, max_batch, files, digests, "0" * 64)


def fake_engine_folder(out: Path, export: ExportSource, target: GpuTarget = TARGET, precision: str | None = None) -> Path:
    """What `build_engines` writes, with plan files holding placeholder bytes."""
    options = BuildOptions(precision=precision or export.precision)
    entries = {}
    for plan in make_plan(export, options, target):
        path = out / plan.engine_file
        out.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"plan {plan.name}".encode())
        entries[plan.name] = engine_entry(plan, sha256_file(path))
    typing = network_typing(target.tensorrt_version, True, options.precision)
    write_manifest(out, make_manifest(export, options, target, typing, export.max_batch, entries))
    return out


@dataclass
class Region:
    data: np.ndarray  # uint8 view of the memory


class FakeDevice:
    """Simulated device memory with pointer arithmetic; records every call as (name, args).

    CUDA-graph capture follows the CUDA runtime (cuda_runtime_api.h, cudaStreamBeginCapture /
    cudaStreamEndCapture / cudaStreamIsCapturing): the capture state of the stream persists until
    `cudaStreamEndCapture`; a failed capture invalidates it, and every later capture-unsafe call
    on the stream (pageable copies, event sync) fails until the capture is ended and the error
    cleared (what trtexec's `endCaptureOnError` does, TensorRT samples/common/sampleInference.cpp).
    """

    can_capture = True

    def __init__(self, name: str = "Orin", cc: tuple[int, int] = (8, 7), integrated: bool = False):
        self.name, self.compute_capability, self.integrated = name, cc, integrated
        self.calls: list[tuple[str, tuple]] = []
        self.regions: dict[int, Region] = {}
        self.host_buffers: set[int] = set()
        self.streams: set[str] = set()
        self.events: set[int] = set()
        self.graphs: set[int] = set()
        self._next = 1 << 20
        self.capturing = False
        self.capture_mode: str | None = None
        self.capture_invalidated = False
        self.captured: list[Callable[[], None]] = []

    def live(self) -> dict[str, int]:
        """What is still allocated / created: all zero after a correct close()."""
        return {"device": len(self.regions), "host": len(self.host_buffers), "streams": len(self.streams),
                "events": len(self.events), "graphs": len(self.graphs)}

    # memory model
    def _new_region(self, data: np.ndarray) -> int:
        base = self._next
        self._next += data.nbytes + 4096  # gaps: an overrun lands nowhere and raises
        self.regions[base] = Region(data)
        return base

    def view(self, ptr: int, nbytes: int) -> np.ndarray:
        for base, region in self.regions.items():
            if base <= ptr and ptr + nbytes <= base + region.data.nbytes:
                return region.data[ptr - base : ptr - base + nbytes]
        raise AssertionError(f"access outside any allocation: {ptr:#x}+{nbytes}")

    def read(self, ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.view(ptr, n).view(dtype).reshape(shape).copy()

    def write(self, ptr: int, value: np.ndarray) -> None:
        self.view(ptr, value.nbytes)[:] = np.ascontiguousarray(value).reshape(-1).view(np.uint8)

    def _copy_allowed(self, name: str) -> None:
        assert not self.capturing, f"{name} issued inside a CUDA-graph capture"

    # Device protocol
    def alloc(self, nbytes: int) -> int:
        self.calls.append(("alloc", (nbytes,)))
        return self._new_region(np.zeros(nbytes, np.uint8))

    def free(self, ptr: int) -> None:
        self.calls.append(("free", (ptr,)))
        del self.regions[ptr]

    def alloc_host(self, shape: tuple[int, ...], dtype: Any, mapped: bool = False) -> HostBuffer:
        self.calls.append(("alloc_host", (shape, np.dtype(dtype).name, mapped)))
        arr = np.zeros(shape, dtype)
        dptr = self._new_region(arr.reshape(-1).view(np.uint8)) if mapped else None  # shares the bytes
        self.host_buffers.add(arr.ctypes.data)
        return HostBuffer(arr, arr.ctypes.data, dptr)

    def free_host(self, buf: HostBuffer) -> None:
        self.calls.append(("free_host", (buf.host_ptr,)))
        self.host_buffers.remove(buf.host_ptr)
        if buf.device_ptr is not None:
            del self.regions[buf.device_ptr]

    def create_stream(self) -> str:
        self.streams.add("stream0")
        return "stream0"

    def destroy_stream(self, stream: Any) -> None:
        self.calls.append(("destroy_stream", ()))
        self.streams.remove(stream)

    def stream_handle(self, stream: Any) -> int:
        return 1234

    def h2d(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self._copy_allowed("h2d")
        self.calls.append(("h2d", (dst, src.nbytes)))
        self.write(dst, src)

    def d2h(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self._copy_allowed("d2h")
        self.calls.append(("d2h", (src, dst.nbytes)))
        dst.reshape(-1).view(np.uint8)[:] = self.view(src, dst.nbytes)

    def d2d(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._copy_allowed("d2d")
        self.calls.append(("d2d", (dst, src, nbytes)))
        self.view(dst, nbytes)[:] = self.view(src, nbytes)

    def copy_2d(self, dst: int, dpitch: int, src: int, spitch: int, width: int, height: int, stream: Any) -> None:
        self._copy_allowed("copy_2d")
        self.calls.append(("copy_2d", (dst, dpitch, src, spitch, width, height)))
        for r in range(height):
            self.view(dst + r * dpitch, width)[:] = self.view(src + r * spitch, width)

    def memset(self, ptr: int, value: int, nbytes: int, stream: Any) -> None:
        self._copy_allowed("memset")
        self.calls.append(("memset", (ptr, nbytes)))
        self.view(ptr, nbytes)[:] = value

    def create_event(self) -> object:
        event = object()
        self.events.add(id(event))
        return event

    def destroy_event(self, event: Any) -> None:
        self.events.remove(id(event))

    def record(self, event: Any, stream: Any) -> None:
        self._copy_allowed("record")
        self.calls.append(("record", ()))

    def elapsed_s(self, start: Any, end: Any) -> float:
        return 0.001

    def synchronize(self, stream: Any) -> None:
        self._copy_allowed("synchronize")
        self.calls.append(("synchronize", ()))

    def begin_capture(self, stream: Any) -> None:
        assert not self.capturing, "cudaStreamBeginCapture on a stream that is already capturing"
        self.calls.append(("begin_capture", ()))
        self.capturing, self.captured, self.capture_mode = True, [], "thread_local"

    def end_capture(self, stream: Any) -> list:
        self.calls.append(("end_capture", ()))
        self.capturing = False
        if self.capture_invalidated:  # cudaErrorStreamCaptureInvalidated: no graph comes out
            from dq_edge.errors import DQEdgeError

            raise DQEdgeError("CUDA error 901 cudaErrorStreamCaptureInvalidated", "")
        graph = list(self.captured)
        self.graphs.add(id(graph))
        return graph

    def abort_capture(self, stream: Any) -> None:
        self.calls.append(("abort_capture", ()))
        self.capturing, self.captured, self.capture_invalidated = False, [], False

    def launch(self, graph_exec: list, stream: Any) -> None:
        self._copy_allowed("launch")
        self.calls.append(("launch", ()))
        for work in graph_exec:
            work()

    def destroy_graph(self, graph_exec: Any) -> None:
        self.calls.append(("destroy_graph", ()))
        self.graphs.remove(id(graph_exec))

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.calls if n == name)


# -- engines that compute a toy function with numpy --------------------------------------------
def row_value(step: np.ndarray | int, sample: np.ndarray, stack: str) -> np.ndarray:
    """The K/V value the toy engines write for token `step` of `sample` (exact in fp16)."""
    return 1.0 + np.asarray(step) + 32.0 * np.asarray(sample) + (0.25 if stack == "content" else 0.0)


def toy_compute(graph: str, x: dict[str, np.ndarray], dims: GraphDims, act: Any) -> dict[str, np.ndarray]:
    """Outputs of the toy engines. Logits = masked sum of cache rows j < step (row 0 of layer 0, head 0, dim 0),
    so they change if a K/V row lands at the wrong offset or the mask reads unwritten rows."""
    H, D, L = dims.heads, dims.head_dim, dims.max_length
    out: dict[str, np.ndarray] = {}
    if graph in ("transformer_position_step", "transformer_content_step"):
        stack = "position" if graph == "transformer_position_step" else "content"
        b, step = (x["content"] if stack == "position" else x["next_position"]).shape[0], x["step"]  # step [b]
        mask = (np.arange(L)[None, :] < step[:, None]).astype(np.float32)  # [b, L]
        past = x["past_key.0"][:, 0, :, 0].astype(np.float32)  # [b, L]
        total = (past * mask).sum(axis=1, keepdims=True)  # [b, 1]
        layers = dims.position_layers if stack == "position" else dims.content_layers
        row = row_value(step, np.arange(b), stack).reshape(b, 1, 1, 1) * np.ones((b, H, 1, D))
        for i in range(layers):
            out[f"present_key.{i}"] = row.astype(act)
            out[f"present_value.{i}"] = (-row).astype(act)
        if stack == "position":
            out["position_logits"] = np.repeat(total, dims.position_vocab, axis=1).astype(np.float32)
            out["hidden"] = np.full((b, dims.width), 0, act) + x["content"].reshape(b, 1).astype(act)
        else:
            vocab = np.repeat(total, dims.content_vocab, axis=1) + x["hidden"][:, :1].astype(np.float32)
            out["content_logits"] = vocab.astype(np.float32)
    elif graph == "transformer_prefill":
        b, T = x["content"].shape
        for stack, rows, prefix, layers in (("position", T, "position_", dims.position_layers), ("content", T - 1, "content_", dims.content_layers)):
            vals = row_value(np.arange(rows).reshape(1, rows), np.arange(b).reshape(b, 1), stack)  # [b, rows]
            block = vals.reshape(b, 1, rows, 1) * np.ones((b, H, rows, D))
            for i in range(layers):
                out[f"{prefix}present_key.{i}"] = block.astype(act)
                out[f"{prefix}present_value.{i}"] = (-block).astype(act)
        total = row_value(np.arange(T - 1).reshape(1, -1), np.arange(b).reshape(b, 1), "position").sum(axis=1, keepdims=True)
        out["position_logits"] = np.repeat(total, dims.position_vocab, axis=1).astype(np.float32)
        out["hidden"] = np.zeros((b, dims.width), act) + x["content"][:, -1:].astype(act)
    elif graph == "encoder":
        b = x["image"].shape[0]
        out["h_coarse"] = np.full((b, dims.z_channels, *dims.coarse_hw), 1, act) * x["image"].mean(axis=(1, 2, 3)).reshape(b, 1, 1, 1).astype(act)
        out["h_fine"] = np.full((b, dims.z_channels, *dims.fine_hw), 2, act)
    elif graph == "dgc":
        b = x["h_coarse"].shape[0]
        out["grain"] = (x["h_coarse"][:, 0] > 0).astype(np.int64)
        out["codes"] = np.broadcast_to(np.arange(dims.fine_hw[0] * dims.fine_hw[1]).reshape(dims.fine_hw), (b, *dims.fine_hw)).astype(np.int64) + x["h_fine"][:, :1, 0, 0].astype(np.int64).reshape(b, 1, 1)
    elif graph == "decoder":
        b = x["codes"].shape[0]
        out["image"] = np.zeros((b, 3, dims.image_size, dims.image_size), np.float32) + x["codes"].mean(axis=(1, 2)).reshape(b, 1, 1, 1).astype(np.float32)
    return out


@dataclass
class FakeEngine:
    """`ICudaEngine` of a strongly typed build: IO modes, dtypes and shapes (-1 = dynamic) as the
    ONNX declares them (TensorRT NvInferRuntime.h getTensorIOMode / getTensorDataType /
    getTensorShape); `io_override` makes it declare something else."""

    spec: GraphSpec
    device_memory_size_v2: int = 4096
    io_override: dict = field(default_factory=dict)

    @property
    def num_io_tensors(self) -> int:
        return len(self.spec.inputs) + len(self.spec.outputs)

    def get_tensor_name(self, i: int) -> str:
        return (self.spec.inputs + self.spec.outputs)[i].name


@dataclass
class FakeContext:
    """`IExecutionContext`. With `fail_capture`, `execute_async_v3` returns False while the
    stream is capturing and invalidates the capture, as TensorRT may for an engine with
    capture-unsafe work (samples/common/sampleInference.cpp, v10.3: "the enqueue call may return
    false if the current CUDA graph capture fails")."""

    engine: FakeEngine
    device: FakeDevice
    compute: Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    addresses: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail_capture: bool = False

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.calls.append("set_input_shape")
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self.calls.append("set_tensor_address")
        self.addresses[name] = ptr

    def _run(self) -> None:
        spec = self.engine.spec
        x = {}
        for t in spec.inputs:
            shape = self.shapes.get(t.name) or tuple(d for d in t.dims if isinstance(d, int))
            x[t.name] = self.device.read(self.addresses[t.name], shape, t.dtype)
        for name, value in self.compute(spec.name, x).items():
            want = next(o for o in spec.outputs if o.name == name).dtype
            assert value.dtype == np.dtype(want), (name, value.dtype, want)
            self.device.write(self.addresses[name], value)

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.calls.append("execute_async_v3")
        assert stream_handle == 1234
        if self.device.capturing and self.fail_capture:
            self.device.capture_invalidated = True
            return False
        if self.device.capturing:
            self.device.captured.append(self._run)  # runs at launch, reading buffers then
        else:
            self._run()
        return True


class FakeLoader:
    def __init__(self, device: FakeDevice, specs: dict[str, GraphSpec], tensorrt_version: str = "10.3.0.30", compute=None,
                 fail_capture: tuple[str, ...] = (), io_override: dict[str, dict] | None = None):
        self.device, self.specs, self.tensorrt_version = device, specs, tensorrt_version
        self.compute = compute
        self.contexts: dict[str, FakeContext] = {}
        self.scratch: list[tuple[int, int]] = []
        self.fail_capture, self.io_override = fail_capture, io_override or {}

    def load(self, path: Path) -> FakeEngine:
        graph = path.name.split(".")[0]
        return FakeEngine(self.specs[graph], io_override=self.io_override.get(graph, {}))

    def io_signature(self, engine: FakeEngine) -> dict:
        from dq_edge.engines.trt_loader import expected_signature

        return {**expected_signature(engine.spec), **engine.io_override}

    def context(self, engine: FakeEngine, scratch_ptr: int, scratch_size: int) -> FakeContext:
        self.scratch.append((scratch_ptr, scratch_size))
        ctx = FakeContext(engine, self.device, self.compute, fail_capture=engine.spec.name in self.fail_capture)
        self.contexts[engine.spec.name] = ctx
        return ctx


def probe_export(folder: Path, max_batch: int = 4) -> Path:
    """A real export folder (H3's manifest) holding H4's hand-written ONNX step graphs."""
    from dq_edge.export.manifest import build_manifest
    from dq_edge.export.manifest import write_manifest as write_export_manifest
    from runtime_fixtures import probe_dims, write_probe_step_graphs

    folder.mkdir(parents=True, exist_ok=True)
    files = write_probe_step_graphs(folder, max_batch)
    dims, layout = probe_dims()
    manifest = build_manifest(
        dims=dims, layout=layout, max_batch=max_batch, opset=17, model_hash="0" * 64, model_path="test",
        options={}, calibration=None, folder=folder, graphs={"fp32": {g: {"quantized": False} for g in files}},
    )
    write_export_manifest(folder, manifest)
    return folder


def ort_compute(files: dict[str, Path]) -> Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Fake engines that run the export's real ONNX graphs with ONNX Runtime (CPU)."""
    import onnxruntime as ort

    sessions = {g: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for g, p in files.items()}

    def compute(graph: str, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = sessions[graph]
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, x)))

    return compute


class Recorder:
    """Wraps a backend and keeps every logits array it returns (to compare two backends step by step)."""

    def __init__(self, backend: Any):
        self._b, self.logits = backend, []
        self.name, self.precision, self.max_batch = backend.name, backend.precision, backend.max_batch
        self.dims, self.layout = backend.dims, backend.layout

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._b, name)
        if name not in ("position_step", "content_step", "prefill"):
            return fn

        def wrapped(*args: Any) -> np.ndarray:
            out = fn(*args)
            self.logits.append((name, out.copy()))
            return out

        return wrapped


from trt_fakes import CORRUPT_CACHE, FOREIGN_CACHE, fake_tensorrt  # noqa: E402,F401 - re-exported
