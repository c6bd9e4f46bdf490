"""Native TensorRT backend: engines from an engine folder, device-resident buffers, one stream.

Buffers ("slots") are allocated once in __init__ for `max_batch`, from `dq_edge.graph_io`:
- KV caches [max_batch, heads, L, head_dim] per layer per stack, on the device. They are the
  step graphs' `past_*` inputs. A step graph returns its new rows `present_*` [b, heads, 1, D];
  one `cudaMemcpy2DAsync` per tensor (device to device) writes them into row `step`: height
  b*heads rows of D elements, source pitch D, destination pitch L*D, destination offset step*D.
  The first `b` samples of a cache are a contiguous prefix, so a smaller batch needs no re-layout.
- `hidden` is one device buffer: output of the position step and of prefill, input of the
  content step. It never crosses to the host.
- Shared slots: encoder outputs are the dgc inputs; both logits outputs of the position stack
  (step and prefill) share one buffer.
- Only logits, grain/codes and decoded images reach the host, through page-locked buffers. On
  Jetson (integrated GPU, unified memory) those buffers are mapped host memory handed to the
  engine as its output address: the engine writes into them directly, there is no device twin
  and no copy, only a stream synchronisation.
- Tensor addresses are set once per context at construction (buffers never move); `begin`
  only sets input shapes and zeroes the caches (masked rows must hold finite values: softmax
  weight 0 times a NaN left in uninitialised memory would still be NaN).
- All execution contexts share one activation scratch region of the largest
  `device_memory_size_v2`: graphs run one after another on one stream, and on Jetson's shared
  DRAM six separate regions would be wasted memory.
- The engine bytes are dropped right after deserialisation (no host copy of the weights).

CUDA graphs (`cuda_graph=True`): each step graph is captured once per batch size, on its second
call (the first call runs normally: TensorRT may do one-time work on the first enqueue after a
shape change, which must not be captured). The captured graph holds only the engine's
kernels. Everything that changes per step stays outside and reaches the graph through device
memory at fixed addresses: token ids and `step` are staged in one page-locked buffer and sent
with one `cudaMemcpyAsync` before the launch (the kernels read them at replay), and the K/V row copies,
whose destination offset depends on `step`, are issued after the launch on the same stream.
Prefill (variable T) and the image graphs are never captured. Changing the batch in `begin`
destroys the captured graphs (their kernels have the old shapes baked in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dq_edge.device import Device, HostBuffer, open_device
from dq_edge.engines.manifest import EngineManifest, check_target, read_manifest, verify_engine_files
from dq_edge.engines.plan import GpuTarget
from dq_edge.engines.trt_loader import EngineLoader, TensorRTLoader, check_engine_io
from dq_edge.errors import ArtifactMismatchError, BackendUnavailableError, ConfigError, DQEdgeError, InputError
from dq_edge.graph_io import (
    GRAPH_NAMES, HIDDEN, HOST_OUTPUTS, INT64, LOGITS_OF, PREFILL_GRAPH, STACK_OF, STEP_GRAPH_OF, GraphSpec,
    CACHE_ROWS, activation_dtype, check_steps, graph_specs, kv_pair_named, kv_pairs, prefill_rows, row_copy_geometry,
    step_copy_geometry, step_sizes,
)
from dq_edge.runtime.timing import StageStats, StageTimes

POS, CON, PRE = STEP_GRAPH_OF["position"], STEP_GRAPH_OF["content"], PREFILL_GRAPH
STEP_GRAPHS = (POS, CON)
STAGE_OF = {POS: "position_step", CON: "content_step", PRE: "prefill", "encoder": "encoder", "dgc": "dgc", "decoder": "decoder"}
__all__ = ["EngineLoader", "TensorRTLoader", "TrtBackend", "slot_name"]


def slot_name(graph: str, tensor: str) -> str:
    """Buffers shared between graphs get one name; every other tensor gets its own slot."""
    pair = kv_pair_named(STACK_OF[graph], tensor) if graph in STACK_OF else None
    if pair is not None and tensor == pair.past:  # past_key.3 of the position step -> cache.position.key.3
        return pair.cache
    if tensor == HIDDEN and graph in (POS, CON, PRE):
        return HIDDEN
    if tensor == "position_logits" and graph in (POS, PRE):
        return "position_logits"
    if graph in ("encoder", "dgc") and tensor in ("h_coarse", "h_fine", "image"):
        return f"vae.{tensor}"
    return f"{graph}.{tensor}"


class TrtBackend:
    """`dq_edge.generation.backend.Backend` on native TensorRT engines."""

    name = "trt"

    def __init__(
        self,
        folder: str | Path,
        precision: str | None = None,
        *,
        cuda_graph: bool = False,
        device: Device | None = None,
        loader: EngineLoader | None = None,
        manifest: EngineManifest | None = None,  # already read by the caller: not read again
    ):
        manifest = manifest if manifest is not None else read_manifest(folder)
        if precision is not None and precision != manifest.precision:
            raise ConfigError(f"{folder} holds {manifest.precision} engines, not {precision}", manifest.rebuild_hint().replace(f"--{manifest.precision}", f"--{precision}"))
        self.precision = manifest.precision
        self.max_batch = manifest.max_batch
        self.dims = manifest.dims
        self.layout = manifest.layout
        self.cuda_graph = cuda_graph
        self._act_itemsize = np.dtype(activation_dtype(self.precision)).itemsize
        self._dev = device if device is not None else open_device()
        if cuda_graph and not getattr(self._dev, "can_capture", True):
            raise BackendUnavailableError("CUDA-graph capture needs cuda-python (this device layer is pycuda)",
                                          "pip install 'cuda-python>=12.6,<13', or run without CUDA graphs")
        self._loader = loader if loader is not None else TensorRTLoader()
        target = GpuTarget(self._loader.tensorrt_version, self._dev.name, self._dev.compute_capability)
        self.warnings = check_target(manifest, target)
        graphs = tuple(g for g in GRAPH_NAMES if g in manifest.engines)
        verify_engine_files(manifest, graphs)
        self.specs: dict[str, GraphSpec] = {g: s for g, s in graph_specs(self.dims, self.precision, self.max_batch).items() if g in graphs}
        for g, spec in self.specs.items():
            if manifest.engines[g]["io"] != spec.to_dict():
                raise ArtifactMismatchError(f"the IO of engine {g} differs from this dq-edge's graph specs", manifest.rebuild_hint())

        engines = {g: self._loader.load(manifest.engine_path(g)) for g in graphs}
        for g, engine in engines.items():  # modes, dtypes and shapes, before any buffer is sized from the spec
            check_engine_io(g, self._loader.io_signature(engine), self.specs[g], manifest.rebuild_hint())
        self._stream = self._dev.create_stream()
        self._handle = self._dev.stream_handle(self._stream)
        self._in_dtype = {(g, t.name): np.dtype(t.dtype) for g, s in self.specs.items() for t in s.inputs}
        self._slots: dict[str, int] = {}  # slot -> device pointer
        self._host: dict[str, HostBuffer] = {}  # slot -> page-locked host buffer (host outputs only)
        self._owned: list[int] = []  # device allocations to free on close
        self._stage: dict[str, tuple[HostBuffer, int, dict[str, int]]] = {}  # step graph -> staging
        self._allocate()
        scratch = max(int(e.device_memory_size_v2) for e in engines.values())
        self._scratch = self._dev.alloc(scratch)
        self._engines = engines
        self._ctx = {g: self._loader.context(e, self._scratch, scratch) for g, e in engines.items()}
        for g, ctx in self._ctx.items():
            for t in self.specs[g].inputs + self.specs[g].outputs:
                ctx.set_tensor_address(t.name, self._slots[slot_name(g, t.name)])
        self._events = {stage: (self._dev.create_event(), self._dev.create_event()) for stage in STAGE_OF.values()}
        self._times = StageTimes(STAGE_OF.values())
        self._graph_exec: dict[str, Any] = {}
        self._warm: set[str] = set()
        self.uncapturable: dict[str, str] = {}  # graph -> why its capture failed (plain enqueue then)
        self._batch = 0

    # -- buffers -----------------------------------------------------------------------------
    def _alloc(self, nbytes: int) -> int:
        ptr = self._dev.alloc(nbytes)
        self._owned.append(ptr)
        return ptr

    def _allocate_stages(self) -> None:
        """One page-locked staging buffer and one device region per step graph for all its int64
        inputs (token ids, `step`): a step sends them with ONE host-to-device copy from pinned
        memory instead of one pageable, stream-serialising copy per tensor."""
        for g in STEP_GRAPHS:
            if g not in self.specs:
                continue
            offsets, n = {}, 0
            for t in self.specs[g].inputs:
                if t.dtype == INT64:
                    offsets[t.name] = n
                    n += self.max_batch  # every int64 step input is a [batch] vector
            host = self._dev.alloc_host((n,), np.int64)
            base = self._alloc(n * 8)
            self._stage[g] = (host, base, offsets)
            for name, offset in offsets.items():
                self._slots[slot_name(g, name)] = base + 8 * offset  # 8-byte aligned inside a 256-aligned region

    def _allocate(self) -> None:
        self._allocate_stages()
        L = self.dims.max_length
        sizes = {"batch": self.max_batch, "tokens": L, "tokens_minus_1": L - 1, CACHE_ROWS: L}
        need: dict[str, tuple[int, Any, tuple[int, ...]]] = {}  # slot -> largest (nbytes, dtype, shape)
        host: set[str] = set()
        for g, spec in self.specs.items():
            for t in spec.inputs + spec.outputs:
                slot = slot_name(g, t.name)
                if slot in self._slots:  # staged step inputs
                    continue
                shape = t.shape(sizes)
                nbytes = int(np.prod(shape)) * np.dtype(t.dtype).itemsize
                if slot not in need or nbytes > need[slot][0]:
                    need[slot] = (nbytes, np.dtype(t.dtype), shape)
                if (g, t.name) in HOST_OUTPUTS:
                    host.add(slot)
        mapped = self._dev.integrated
        for slot, (nbytes, dtype, shape) in need.items():
            if slot in host:
                buf = self._dev.alloc_host(shape, dtype, mapped=mapped)
                self._host[slot] = buf
                self._slots[slot] = buf.device_ptr if mapped and buf.device_ptr is not None else self._alloc(nbytes)
            else:
                self._slots[slot] = self._alloc(nbytes)

    def __enter__(self) -> "TrtBackend":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Free every buffer and release the captured graphs, events and stream (the backend is
        unusable after; a second close does nothing)."""
        if self._stream is None:
            return
        self._drop_graphs()
        for ptr in self._owned:
            self._dev.free(ptr)
        for buf in list(self._host.values()) + [stage[0] for stage in self._stage.values()]:
            self._dev.free_host(buf)
        self._dev.free(self._scratch)
        for start, end in self._events.values():
            self._dev.destroy_event(start)
            self._dev.destroy_event(end)
        self._dev.destroy_stream(self._stream)
        self._slots, self._host, self._owned, self._stage, self._events = {}, {}, [], {}, {}
        self._stream = None

    def _drop_graphs(self) -> None:
        for exec_ in self._graph_exec.values():
            self._dev.destroy_graph(exec_)
        self._graph_exec.clear()
        self._warm.clear()

    # -- helpers -------------------------------------------------------------------------------
    def _put(self, graph: str, tensor: str, value: np.ndarray) -> None:
        arr = np.ascontiguousarray(value, dtype=self._in_dtype[graph, tensor])
        self._dev.h2d(self._slots[slot_name(graph, tensor)], arr, self._stream)

    def _put_step(self, graph: str, feeds: dict[str, np.ndarray], steps: np.ndarray) -> None:
        """Token ids and per-row `step` into the pinned staging buffer, then one copy to the device."""
        host, base, offsets = self._stage[graph]
        b = self._batch
        for name, value in {**feeds, "step": steps}.items():
            host.array[offsets[name] : offsets[name] + b] = value
        self._dev.h2d(base, host.array, self._stream)

    def _fetch(self, graph: str, tensor: str, shape: tuple[int, ...]) -> np.ndarray:
        """Enqueue the device-to-host copy of an output's first rows (no copy when mapped)."""
        slot = slot_name(graph, tensor)
        buf = self._host[slot]
        n = int(np.prod(shape))
        view = buf.array.reshape(-1)[:n].reshape(shape)
        if buf.device_ptr is None or buf.device_ptr != self._slots[slot]:
            self._dev.d2h(view, self._slots[slot], self._stream)
        return view

    def _set_shapes(self, graph: str, sizes: dict[str, int]) -> None:
        ctx = self._ctx[graph]
        for t in self.specs[graph].inputs:
            if all(isinstance(dim, int) for dim in t.dims):
                continue  # fully static: nothing to set
            ok = ctx.set_input_shape(t.name, t.shape(sizes))
            if ok is False:
                raise DQEdgeError(f"TensorRT refused shape {t.shape(sizes)} for {graph}:{t.name}", "rebuild the engines with a larger --max-batch")

    def _execute(self, graph: str) -> None:
        if self.cuda_graph and graph in STEP_GRAPHS and graph not in self.uncapturable:
            if graph in self._graph_exec:
                self._dev.launch(self._graph_exec[graph], self._stream)
                return
            if graph in self._warm:  # second call: capture the engine's kernels, then replay them
                if self._capture(graph):
                    self._dev.launch(self._graph_exec[graph], self._stream)
                    return
            self._warm.add(graph)
        self._enqueue(graph)

    def _capture(self, graph: str) -> bool:
        """Capture one enqueue. TensorRT may refuse (sampleInference.cpp: "the enqueue call may
        return false if the current CUDA graph capture fails"): then end the capture, clear the
        error and run this graph with plain enqueues from now on, as trtexec does."""
        self._dev.begin_capture(self._stream)
        try:
            self._enqueue(graph)
            self._graph_exec[graph] = self._dev.end_capture(self._stream)
        except DQEdgeError as exc:
            self._dev.abort_capture(self._stream)
            self.uncapturable[graph] = str(exc)
            return False
        return True

    def _enqueue(self, graph: str) -> None:
        if not self._ctx[graph].execute_async_v3(self._handle):
            raise DQEdgeError(f"TensorRT failed to enqueue {graph}", "rerun with --debug; check `dq-edge compare` for this engine folder")

    def _start(self, graph: str) -> None:
        self._dev.record(self._events[STAGE_OF[graph]][0], self._stream)

    def _finish(self, graph: str) -> None:
        stage = STAGE_OF[graph]
        start, end = self._events[stage]
        self._dev.record(end, self._stream)
        self._dev.synchronize(self._stream)
        self._times.add(stage, self._dev.elapsed_s(start, end))

    def _store_rows(self, graph: str, stack: str, steps: np.ndarray | None, tokens: int | None = None) -> None:
        """New K/V rows into the caches (device to device, pitched copies): after a step, sample
        b's row at row steps[b]; after prefill of `tokens` tokens, `prefill_rows` rows from row 0."""
        if tokens is None:
            copies = step_copy_geometry(self.dims, self._act_itemsize, steps)
        else:
            copies = [row_copy_geometry(self.dims, self._act_itemsize, self._batch, 0, prefill_rows(stack, tokens))]
        for pair in kv_pairs(self.dims, stack):
            src = self._slots[slot_name(graph, pair.present if tokens is None else pair.prefill_present)]
            for g in copies:
                dst = self._slots[pair.cache] + g["dst_offset"]
                self._dev.copy_2d(dst, g["dpitch"], src + g["src_offset"], g["spitch"], g["width"], g["height"], self._stream)

    def _need(self, graph: str) -> None:
        if graph not in self._ctx:
            raise ConfigError(f"this engine folder has no {graph} engine", "build it with `dq-edge build-engine EXPORT_DIR --only " + graph + "`")

    def _check_batch(self, b: int) -> None:
        if not 1 <= b <= self.max_batch:
            raise InputError(f"batch {b} is outside 1..{self.max_batch} (the engines' max batch)", "lower --batch or rebuild with a larger --max-batch")

    # -- Backend protocol -------------------------------------------------------------------------
    def begin(self, batch: int) -> None:
        self._need(POS)
        self._check_batch(batch)
        if batch != self._batch:
            self._drop_graphs()  # their kernels have the old shapes baked in
            for g in STEP_GRAPHS:
                if g in self._ctx:
                    self._set_shapes(g, step_sizes(batch, self.dims.max_length))  # full-length caches
        self._batch = batch
        d = self.dims
        cache_bytes = self.max_batch * d.heads * d.max_length * d.head_dim * self._act_itemsize
        for slot, ptr in self._slots.items():
            if slot.startswith("cache."):
                self._dev.memset(ptr, 0, cache_bytes, self._stream)

    def position_step(self, content: np.ndarray, position: np.ndarray, segment: np.ndarray, step) -> np.ndarray:
        steps = check_steps(step, self._batch, self.dims.max_length)
        self._start(POS)
        self._put_step(POS, {"content": content, "position": position, "segment": segment}, steps)
        self._execute(POS)
        self._store_rows(POS, "position", steps)
        logits = self._fetch(POS, LOGITS_OF["position"], (self._batch, self.dims.position_vocab))
        self._finish(POS)
        return logits.copy()

    def content_step(self, next_position: np.ndarray, next_segment: np.ndarray, step) -> np.ndarray:
        self._need(CON)
        steps = check_steps(step, self._batch, self.dims.max_length)
        self._start(CON)
        self._put_step(CON, {"next_position": next_position, "next_segment": next_segment}, steps)
        self._execute(CON)
        self._store_rows(CON, "content", steps)
        logits = self._fetch(CON, LOGITS_OF["content"], (self._batch, self.dims.content_vocab))
        self._finish(CON)
        return logits.copy()

    def prefill(self, content: np.ndarray, position: np.ndarray, segment: np.ndarray) -> np.ndarray:
        self._need(PRE)
        b, T = content.shape
        if b != self._batch or not 2 <= T <= self.dims.max_length:
            raise InputError(f"prefill of {b}x{T} tokens after begin({self._batch})", f"pass [batch, T] with 2 <= T <= {self.dims.max_length}")
        self._set_shapes(PRE, {"batch": b, "tokens": T, "tokens_minus_1": T - 1})
        self._start(PRE)
        for name, value in (("content", content), ("position", position), ("segment", segment)):
            self._put(PRE, name, value)
        self._enqueue(PRE)
        self._store_rows(PRE, "position", None, T)
        self._store_rows(PRE, "content", None, T)
        logits = self._fetch(PRE, "position_logits", (b, self.dims.position_vocab))
        self._finish(PRE)
        return logits.copy()

    def encode(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._need("encoder")
        self._need("dgc")
        b = image.shape[0]
        self._check_batch(b)
        self._set_shapes("encoder", {"batch": b})
        self._set_shapes("dgc", {"batch": b})
        self._start("encoder")
        self._put("encoder", "image", image)
        self._enqueue("encoder")
        self._finish("encoder")
        self._start("dgc")
        self._enqueue("dgc")
        hc, wc = self.dims.coarse_hw
        hf, wf = self.dims.fine_hw
        grain = self._fetch("dgc", "grain", (b, hc, wc))
        codes = self._fetch("dgc", "codes", (b, hf, wf))
        self._finish("dgc")
        return grain.copy(), codes.copy()

    def decode(self, codes: np.ndarray) -> np.ndarray:
        self._need("decoder")
        b = codes.shape[0]
        self._check_batch(b)
        self._set_shapes("decoder", {"batch": b})
        self._start("decoder")
        self._put("decoder", "codes", codes)
        self._enqueue("decoder")
        size = self.dims.image_size
        image = self._fetch("decoder", "image", (b, 3, size, size))
        self._finish("decoder")
        return image.copy()

    def stage_times(self) -> dict[str, StageStats]:
        return self._times.snapshot()

    def reset_stage_times(self) -> None:
        self._times.reset()
