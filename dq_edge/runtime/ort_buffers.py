"""Step-graph buffers of the ONNX Runtime backend, bound once per `begin(batch)`.

What "bound" means depends on where the provider runs the graph (ONNX Runtime
`onnxruntime/core/session/IOBinding.cc`, `IOBinding::BindInput` ->
`utils::CopyOneInputAcrossDevices` in `core/framework/utils.cc`): a bound input that lives on
another device than the node consuming it is COPIED at bind time, and `run_with_iobinding`
reads that copy; nothing copies again. So:

- `HostBuffers` (CPU provider): host numpy buffers, bound as OrtValue views. Same device, no
  copy: the provider reads the buffers live, so writing them in place between runs is correct.
- `DeviceBuffers` (CUDA / TensorRT providers): every bound tensor is device memory owned by
  the device layer (`dq_edge.device`), bound by pointer (`bind_input(name, "cuda", id, dtype,
  shape, ptr)`), hence read live. Step inputs are staged in one page-locked buffer and sent
  with one host-to-device copy; new K/V rows go into the caches with one pitched device copy
  per cache; only logits come back to the host.

The KV protocol (which past pairs with which present, prefill rows, where a row goes, what the
host reads) comes from `dq_edge.graph_io`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from dq_edge.device import Device, HostBuffer
from dq_edge.graph_io import (
    HIDDEN, INT64, LOGITS_OF, PREFILL_GRAPH, STACK_OF, STEP_GRAPH_OF, GraphDims, GraphSpec, TensorSpec,
    activation_dtype, all_kv_pairs, bucket_copy_geometry, bucket_for, cache_shape, kv_pair_named, kv_pairs, prefill_rows,
    row_copy_geometry, step_copy_geometry, step_rows, step_sizes, store_rows,
)

Session = Any  # onnxruntime.InferenceSession (or a test double with the same methods)


def _leading(arr: np.ndarray, spec: TensorSpec, batch: int) -> np.ndarray:
    """The first `batch` rows when the tensor has a batch dim (contiguous: batch leads)."""
    return arr[:batch] if spec.dims and spec.dims[0] == "batch" else arr


class HostBuffers:
    """CPU provider: numpy buffers sized for max_batch, bound as views (read live by the CPU EP).

    Caches: one contiguous [max_batch, heads, R, D] array per cache and per length bucket R
    (graph_io.cache_buckets); the past inputs are bound to the smallest bucket that holds every
    row's prefix, so a step reads R rows, not L. `ensure_rows` switches buckets: it copies rows
    [0, min(R_old, R_new)) of every cache once and rebinds the past inputs."""

    def __init__(self, ort: Any, specs: dict[str, GraphSpec], dims: GraphDims, max_batch: int, buckets: tuple[int, ...]):
        self._ort, self._specs, self._dims, self.buckets = ort, specs, dims, buckets
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        for graph in STEP_GRAPH_OF.values():
            spec = specs[graph]
            self.arrays[graph] = {
                t.name: np.zeros(t.shape(step_sizes(max_batch, dims.max_length)), np.dtype(t.dtype))
                for t in spec.inputs + spec.outputs if kv_pair_named(STACK_OF[graph], t.name) is None or t in spec.outputs
            }
        # one hidden buffer: the position step writes it, the content step reads it
        self.arrays[STEP_GRAPH_OF["content"]][HIDDEN] = self.arrays[STEP_GRAPH_OF["position"]][HIDDEN]
        act = np.dtype(specs[STEP_GRAPH_OF["position"]].inputs[-1].dtype)
        self.caches = {
            rows: {pair.cache: np.zeros(cache_shape(dims, max_batch, rows), act) for pair in all_kv_pairs(dims)}
            for rows in buckets
        }
        self.rows = buckets[0]
        self._point_pasts()
        self._bound: list[Any] = []  # keeps the OrtValues of the bound views alive
        self._batch = 0
        self._bindings: dict[str, Any] = {}

    def _point_pasts(self) -> None:
        """arrays[graph][past] = the current bucket's cache (what is bound)."""
        for graph in STEP_GRAPH_OF.values():
            for pair in kv_pairs(self._dims, STACK_OF[graph]):
                self.arrays[graph][pair.past] = self.caches[self.rows][pair.cache]

    def bind(self, session: Callable[[str], Session], batch: int) -> dict[str, Any]:
        self._batch, self._bound, self.rows = batch, [], self.buckets[0]
        self._point_pasts()
        bindings = {}
        for graph in STEP_GRAPH_OF.values():
            spec, bufs = self._specs[graph], self.arrays[graph]
            binding = session(graph).io_binding()
            for t in spec.inputs:
                binding.bind_ortvalue_input(t.name, self._value(_leading(bufs[t.name], t, batch)))
            for t in spec.outputs:
                binding.bind_ortvalue_output(t.name, self._value(_leading(bufs[t.name], t, batch)))
            bindings[graph] = binding
        for caches in self.caches.values():
            for cache in caches.values():
                cache[:batch].fill(0)  # masked rows must be finite
        self._bindings = bindings
        return bindings

    def ensure_rows(self, needed: int) -> None:
        """Bind the smallest bucket holding `needed` cache rows (copying the kept rows over)."""
        rows = bucket_for(needed, self.buckets)
        if rows == self.rows:
            return
        b, keep = self._batch, min(rows, self.rows)
        for name, cache in self.caches[rows].items():
            cache[:b, :, :keep] = self.caches[self.rows][name][:b, :, :keep]
        self.rows = rows
        self._point_pasts()
        for graph, binding in self._bindings.items():
            for pair in kv_pairs(self._dims, STACK_OF[graph]):
                binding.bind_ortvalue_input(pair.past, self._value(self.arrays[graph][pair.past][:b]))

    def _value(self, array: np.ndarray) -> Any:
        value = self._ort.OrtValue.ortvalue_from_numpy(array)
        self._bound.append(value)
        return value

    def step(self, session: Session, binding: Any, graph: str, feeds: dict[str, np.ndarray], step) -> np.ndarray:
        b, bufs = self._batch, self.arrays[graph]
        for name, value in feeds.items():
            bufs[name][:b] = value
        steps = bufs["step"][:b]
        steps[:] = step  # an int broadcasts; an int64 [b] gives each row its own step
        session.run_with_iobinding(binding)
        for pair in kv_pairs(self._dims, STACK_OF[graph]):
            store_rows(bufs[pair.past][:b], bufs[pair.present][:b], steps)
        return bufs[LOGITS_OF[STACK_OF[graph]]][:b].copy()  # the caller may mask it in place

    def prefill(self, session: Session, feeds: dict[str, np.ndarray]) -> np.ndarray:
        b, tokens = feeds["content"].shape
        names = [t.name for t in self._specs[PREFILL_GRAPH].outputs]
        outputs = dict(zip(names, session.run(names, feeds)))
        self.ensure_rows(tokens + 1)  # the next step stores row `tokens`
        for pair in all_kv_pairs(self._dims):
            present = outputs[pair.prefill_present]  # [b, H, rows, D]
            assert present.shape[2] == prefill_rows(pair.stack, tokens)
            store_rows(self.arrays[STEP_GRAPH_OF[pair.stack]][pair.past][:b], present, 0)
        self.arrays[STEP_GRAPH_OF["position"]][HIDDEN][:b] = outputs[HIDDEN]
        return np.asarray(outputs["position_logits"], dtype=np.float32)

    def addresses(self) -> dict[str, int]:
        # the past entries of `arrays` alias the current bucket: list the buckets themselves
        addresses = {f"{g}/{n}": a.ctypes.data for g, bufs in self.arrays.items() for n, a in bufs.items()
                     if kv_pair_named(STACK_OF[g], n) is None or n.startswith("present")}
        addresses.update({f"{r}/{n}": a.ctypes.data for r, caches in self.caches.items() for n, a in caches.items()})
        addresses.update({f"bound/{i}": v.data_ptr() for i, v in enumerate(self._bound)})
        return addresses

    def close(self) -> None:
        self._bound = []


class DeviceBuffers:
    """CUDA / TensorRT providers: device memory from the device layer, bound by pointer. Caches
    live in one device buffer per length bucket, as in `HostBuffers`; a bucket switch is one
    pitched device-to-device copy per cache and a rebind of the past inputs."""

    def __init__(
        self, device: Device, device_id: int, specs: dict[str, GraphSpec], dims: GraphDims, max_batch: int, precision: str,
        buckets: tuple[int, ...] | None = None,
    ):
        self._dev, self._id, self._specs, self._dims = device, device_id, specs, dims
        self.buckets = buckets or (dims.max_length,)
        self.rows = self.buckets[0]
        self._act = np.dtype(activation_dtype(precision))
        self._max_batch = max_batch
        self._stream = device.create_stream()
        cache_bytes = int(np.prod((max_batch, dims.heads, dims.max_length, dims.head_dim))) * self._act.itemsize
        self.cache_bytes = cache_bytes
        self.ptr: dict[str, int] = {}
        for pair in all_kv_pairs(dims):
            for rows in self.buckets:
                self.ptr[f"{pair.cache}.{rows}"] = device.alloc(self._cache_bytes(rows))
            # new rows of a step ([b, H, 1, D]) and of prefill ([b, H, rows, D]) share one buffer
            self.ptr[f"present.{pair.stack}.{pair.kind}.{pair.layer}"] = device.alloc(cache_bytes)
        self.ptr[HIDDEN] = device.alloc(max_batch * dims.width * self._act.itemsize)
        self._host: dict[str, HostBuffer] = {}
        self._offsets: dict[str, dict[str, int]] = {}  # graph -> int64 input -> element offset in its stage
        for stack, graph in STEP_GRAPH_OF.items():
            spec = specs[graph]
            logits = spec.output(LOGITS_OF[stack])
            self.ptr[logits.name] = device.alloc(int(np.prod(logits.shape({"batch": max_batch}))) * 4)
            self._host[logits.name] = device.alloc_host(logits.shape({"batch": max_batch}), np.float32)
            # one page-locked staging buffer (and one device twin) for all int64 step inputs
            ids = [t for t in spec.inputs if t.dtype == INT64]
            offset, slots = 0, {}
            for t in ids:  # all [batch] vectors, `step` included
                slots[t.name] = offset
                offset += max_batch
            self._offsets[graph] = slots
            self._host[f"stage.{graph}"] = device.alloc_host((offset,), np.int64)
            self.ptr[f"stage.{graph}"] = device.alloc(offset * 8)
        self._batch = 0
        self._bindings: dict[str, Any] = {}

    def _cache_bytes(self, rows: int) -> int:
        return int(np.prod(cache_shape(self._dims, self._max_batch, rows))) * self._act.itemsize

    def _cache_ptr(self, pair: Any, rows: int | None = None) -> int:
        return self.ptr[f"{pair.cache}.{rows or self.rows}"]

    def _present_ptr(self, pair: Any) -> int:
        return self.ptr[f"present.{pair.stack}.{pair.kind}.{pair.layer}"]

    def _bind(self, binding: Any, spec: TensorSpec, ptr: int, shape: tuple[int, ...], output: bool) -> None:
        bind = binding.bind_output if output else binding.bind_input
        bind(spec.name, "cuda", self._id, np.dtype(spec.dtype).type, list(shape), ptr)

    def _address(self, graph: str, t: TensorSpec, batch: int) -> tuple[int, tuple[int, ...]]:
        """Device pointer and shape a step graph's tensor is bound to."""
        dims = self._dims
        sizes = step_sizes(batch, self.rows)
        if t.name == HIDDEN:
            return self.ptr[HIDDEN], t.shape(sizes)
        if t.name in self._offsets[graph]:
            return self.ptr[f"stage.{graph}"] + 8 * self._offsets[graph][t.name], t.shape(sizes)
        if t.name in (LOGITS_OF["position"], LOGITS_OF["content"]):
            return self.ptr[t.name], t.shape(sizes)
        for pair in kv_pairs(dims, STACK_OF[graph]):
            if t.name == pair.past:
                return self._cache_ptr(pair), t.shape(sizes)
            if t.name == pair.present:
                return self._present_ptr(pair), t.shape(sizes)
        raise AssertionError(f"no buffer for {graph}:{t.name}")  # graph_io and this class disagree

    def bind(self, session: Callable[[str], Session], batch: int) -> dict[str, Any]:
        self._batch, self.rows = batch, self.buckets[0]
        bindings = {}
        for graph in STEP_GRAPH_OF.values():
            spec = self._specs[graph]
            binding = session(graph).io_binding()
            for t in spec.inputs:
                self._bind(binding, t, *self._address(graph, t, batch), output=False)
            for t in spec.outputs:
                self._bind(binding, t, *self._address(graph, t, batch), output=True)
            bindings[graph] = binding
        for pair in all_kv_pairs(self._dims):
            for rows in self.buckets:  # masked rows stay finite
                self._dev.memset(self._cache_ptr(pair, rows), 0, self._cache_bytes(rows), self._stream)
        self._dev.synchronize(self._stream)
        self._bindings = bindings
        return bindings

    def ensure_rows(self, needed: int) -> None:
        """Bind the smallest bucket holding `needed` cache rows (device copy of the kept rows)."""
        rows = bucket_for(needed, self.buckets)
        if rows == self.rows:
            return
        g = bucket_copy_geometry(self._dims, self._act.itemsize, self._batch, self.rows, rows)
        for pair in all_kv_pairs(self._dims):
            self._dev.copy_2d(self._cache_ptr(pair, rows), g["dpitch"], self._cache_ptr(pair), g["spitch"],
                              g["width"], g["height"], self._stream)
        self._dev.synchronize(self._stream)  # ORT runs on its own stream
        self.rows = rows
        for graph, binding in self._bindings.items():
            for t in self._specs[graph].inputs:
                if kv_pair_named(STACK_OF[graph], t.name) is not None:
                    self._bind(binding, t, *self._address(graph, t, self._batch), output=False)

    def step(self, session: Session, binding: Any, graph: str, feeds: dict[str, np.ndarray], step) -> np.ndarray:
        b, slots = self._batch, self._offsets[graph]
        stage = self._host[f"stage.{graph}"].array
        for name, value in feeds.items():
            stage[slots[name] : slots[name] + b] = value
        stage[slots["step"] : slots["step"] + b] = step  # int (broadcast) or int64 [b]
        self._dev.h2d(self.ptr[f"stage.{graph}"], stage, self._stream)  # one copy, from pinned memory
        self._dev.synchronize(self._stream)  # ORT runs on its own stream: the inputs must be there
        session.run_with_iobinding(binding)  # returns after ORT synchronised its stream
        stack = STACK_OF[graph]
        copies = step_copy_geometry(self._dims, self._act.itemsize, step_rows(step, b), self.rows)
        for pair in kv_pairs(self._dims, stack):
            self._store(pair, copies)
        return self._logits(LOGITS_OF[stack], b)

    def _store(self, pair: Any, copies: list[dict[str, int]]) -> None:
        """New rows from the present buffer into the cache: pitched device-to-device copies."""
        for g in copies:
            self._dev.copy_2d(self._cache_ptr(pair) + g["dst_offset"], g["dpitch"], self._present_ptr(pair) + g["src_offset"],
                              g["spitch"], g["width"], g["height"], self._stream)

    def _logits(self, name: str, batch: int) -> np.ndarray:
        host = self._host[name].array[:batch]
        self._dev.d2h(host, self.ptr[name], self._stream)
        self._dev.synchronize(self._stream)
        return host.copy()

    def prefill(self, session: Session, feeds: dict[str, np.ndarray]) -> np.ndarray:
        b, tokens = feeds["content"].shape
        spec = self._specs[PREFILL_GRAPH]
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)  # copied to the device now, right before this one run
        sizes = {"batch": b, "tokens": tokens, "tokens_minus_1": tokens - 1}
        by_name = {pair.prefill_present: pair for pair in all_kv_pairs(self._dims)}
        for t in spec.outputs:
            if t.name in by_name:
                ptr = self._present_ptr(by_name[t.name])
            else:  # hidden, position_logits: the position step's buffers
                ptr = self.ptr[t.name]
            self._bind(binding, t, ptr, t.shape(sizes), output=True)
        session.run_with_iobinding(binding)
        self.ensure_rows(tokens + 1)  # the next step stores row `tokens`
        for pair in all_kv_pairs(self._dims):
            rows = prefill_rows(pair.stack, tokens)
            self._store(pair, [row_copy_geometry(self._dims, self._act.itemsize, b, 0, rows, self.rows)])
        return self._logits(LOGITS_OF["position"], b)

    def addresses(self) -> dict[str, int]:
        return dict(self.ptr)

    def close(self) -> None:
        for ptr in self.ptr.values():
            self._dev.free(ptr)
        for buf in self._host.values():
            self._dev.free_host(buf)
        self._dev.destroy_stream(self._stream)
        self.ptr, self._host = {}, {}

