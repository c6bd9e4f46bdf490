"""ONNX Runtime backend: exported graphs + IO binding over buffers allocated once.

Buffers (all sized for `max_batch`, from `dq_edge.graph_io.graph_specs`, allocated in __init__):
- KV caches [max_batch, heads, L, head_dim] per layer per stack (numpy, host memory). They are
  the step graphs' `past_*` inputs; after each step the runtime copies the graph's new rows
  `present_*` [batch, heads, 1, head_dim] into row `step` of the caches in place.
- step inputs (token ids, `step`), step outputs (logits, hidden, present rows).
`begin(batch)` wraps contiguous views of the first `batch` rows (the batch dim leads, so
`buf[:batch]` is contiguous) in OrtValues and binds them once; a step then only copies the
token ids into the bound buffers, runs, and copies the new K/V rows. Nothing is allocated
inside a step, so buffer addresses never move (tests/test_runtime_buffers.py checks this).

`hidden` is bound as the position step's output and as the content step's input: on CPU it
is one host buffer; on CUDA / TensorRT execution providers it is a device OrtValue, so it
never crosses to the host. The KV caches stay in host memory on every provider: ONNX Runtime's
Python API has no strided device-to-device copy to write one cache row on the GPU, so the
provider copies the caches to the device each step. The native TensorRT backend
(`dq_edge.engines.trt_backend`) keeps them device-resident.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from dq_edge import precisions
from dq_edge.errors import ArtifactMismatchError, BackendUnavailableError, InputError
from dq_edge.graph_io import GraphDims, GraphSpec, TensorSpec, graph_specs
from dq_edge.tokens import TokenLayout

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
STEP_GRAPHS = ("transformer_position_step", "transformer_content_step")
DEFAULT_CPU_THREADS = 1
STACK_OF_STEP = {"transformer_position_step": "position", "transformer_content_step": "content"}


def provider_available(provider: str) -> bool:
    return PROVIDERS[provider] in ort.get_available_providers()


def trt_profile_options(spec: GraphSpec) -> dict[str, str]:
    """The graph's min/opt/max input shapes (from graph_io) as TensorRT EP profile options, so
    the EP builds one engine per graph instead of one per new batch size / token count."""
    profile = spec.profile()
    options = {}
    for key, index in (("trt_profile_min_shapes", 0), ("trt_profile_opt_shapes", 1), ("trt_profile_max_shapes", 2)):
        options[key] = ",".join(f"{name}:{'x'.join(str(d) for d in shapes[index])}" for name, shapes in profile.items())
    return options


def provider_chain(
    provider: str, precision: str, cache_dir: str | Path | None, device_id: int = 0, spec: GraphSpec | None = None
) -> list[Any]:
    """Execution providers for `provider` in priority order, with their options."""
    cuda = ("CUDAExecutionProvider", {"device_id": device_id})
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider == "cuda":
        return [cuda, "CPUExecutionProvider"]
    trt_options: dict[str, Any] = {
        "device_id": device_id,
        # typed ONNX carries the precision; the flags let the EP keep fp16 / QDQ layers
        "trt_fp16_enable": "FP16" in precisions.get(precision).trt_flags,
        "trt_int8_enable": "INT8" in precisions.get(precision).trt_flags,
    }
    if cache_dir is not None:
        trt_options.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)})
    if spec is not None:
        trt_options.update(trt_profile_options(spec))
    return [("TensorrtExecutionProvider", trt_options), cuda, "CPUExecutionProvider"]


def _zeros(spec: TensorSpec, max_batch: int) -> np.ndarray:
    return np.zeros(spec.shape({"batch": max_batch}), dtype=np.dtype(spec.dtype))


def _leading(arr: np.ndarray, spec: TensorSpec, batch: int) -> np.ndarray:
    """The first `batch` rows when the tensor has a batch dim (contiguous: batch leads)."""
    return arr[:batch] if spec.dims and spec.dims[0] == "batch" else arr


class OrtBackend:
    """`dq_edge.runtime.backend.Backend` on ONNX Runtime (CPU, CUDA or TensorRT provider)."""

    def __init__(
        self,
        graph_files: dict[str, str | Path],
        dims: GraphDims,
        layout: TokenLayout,
        precision: str,
        max_batch: int,
        provider: str = "cpu",
        threads: int | None = None,
        cache_dir: str | Path | None = None,
        device_id: int = 0,
    ):
        if provider not in PROVIDERS:
            raise InputError(f"unknown ONNX Runtime provider {provider!r}", f"use one of {', '.join(PROVIDERS)}")
        if not provider_available(provider):
            raise BackendUnavailableError(
                f"ONNX Runtime here has no {PROVIDERS[provider]} (available: {', '.join(ort.get_available_providers())})",
                "pip uninstall onnxruntime && pip install onnxruntime-gpu (needs an NVIDIA GPU with CUDA"
                + (" and TensorRT)" if provider == "trt" else ")"),
            )
        self.name = f"ort-{provider}"
        self.provider = provider
        self.precision = precision
        self.max_batch = max_batch
        self.dims = dims
        self.layout = layout
        self.specs: dict[str, GraphSpec] = graph_specs(dims, precision, max_batch)
        self._files = {name: Path(path) for name, path in graph_files.items()}
        self._provider_args = (provider, precision, cache_dir, device_id)
        self._options = ort.SessionOptions()
        self._options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._options.log_severity_level = 3  # errors only: optimizer notes are not the user's business
        # default 1 thread, no spinning: measured faster on a shared CPU (docs/runtime.md, "Threads")
        self._options.intra_op_num_threads = threads or DEFAULT_CPU_THREADS
        self._options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._device = ("cpu", 0) if provider == "cpu" else ("cuda", device_id)
        # GPU providers: `hidden` is an ORT-allocated device OrtValue the host never reads
        self.hidden_on_device = provider != "cpu"
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._times: dict[str, list[float]] = {
            s: [] for s in ("encoder", "dgc", "position_step", "content_step", "prefill", "decoder")
        }
        # host buffers of the two step graphs, name -> array sized for max_batch
        self._buffers: dict[str, dict[str, np.ndarray]] = {}
        for graph in STEP_GRAPHS:
            spec = self.specs[graph]
            self._buffers[graph] = {t.name: _zeros(t, max_batch) for t in spec.inputs + spec.outputs}
        # one hidden buffer shared by both graphs: position step writes it, content step reads it
        hidden = self._buffers["transformer_position_step"]["hidden"]
        self._buffers["transformer_content_step"]["hidden"] = hidden
        self._hidden_device: dict[int, ort.OrtValue] = {}  # batch -> device OrtValue (GPU providers)
        self._bindings: dict[str, ort.IOBinding] = {}
        self._bound_values: list[ort.OrtValue] = []  # keeps the OrtValues of the bound views alive
        self._row_copies: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._batch = 0
        for graph in STEP_GRAPHS:  # step graphs are needed by every run: load them now
            self._session(graph)

    # ------------------------------------------------------------------ sessions and binding
    def _session(self, graph: str) -> ort.InferenceSession:
        if graph not in self._sessions:
            path = self._files.get(graph)
            if path is None or not path.is_file():
                raise ArtifactMismatchError(f"graph {graph} is missing ({path})", "re-run `dq-edge export` for this model")
            try:
                providers = provider_chain(*self._provider_args, spec=self.specs.get(graph))
                session = ort.InferenceSession(str(path), self._options, providers=providers)
            except Exception as exc:  # noqa: BLE001 - ORT raises its own pybind classes
                if self.provider != "cpu":
                    raise BackendUnavailableError(
                        f"ONNX Runtime could not start {PROVIDERS[self.provider]} for {path.name}: {exc}",
                        "check the CUDA / TensorRT libraries onnxruntime-gpu needs, or use --backend ort-cpu",
                    ) from exc
                raise ArtifactMismatchError(
                    f"ONNX Runtime cannot load {path}: {exc}", "re-run `dq-edge export` for this model"
                ) from exc
            active = session.get_providers()
            if active[0] != PROVIDERS[self.provider]:
                # onnxruntime-gpu lists GPU providers even without a GPU and silently falls back
                raise BackendUnavailableError(
                    f"ONNX Runtime fell back from {PROVIDERS[self.provider]} to {active[0]} (no usable GPU or CUDA/TensorRT libraries)",
                    "install onnxruntime-gpu with matching CUDA/cuDNN (and TensorRT for ort-trt) on an NVIDIA GPU machine",
                )
            self._sessions[graph] = session
        return self._sessions[graph]

    def active_providers(self, graph: str = "transformer_position_step") -> list[str]:
        return self._session(graph).get_providers()

    def _value(self, array: np.ndarray) -> ort.OrtValue:
        value = ort.OrtValue.ortvalue_from_numpy(array)
        self._bound_values.append(value)
        return value

    def _hidden_value(self, batch: int) -> ort.OrtValue:
        if not self.hidden_on_device:
            return self._value(self._buffers["transformer_position_step"]["hidden"][:batch])
        if batch not in self._hidden_device:
            spec = self.specs["transformer_position_step"].output("hidden")
            self._hidden_device[batch] = ort.OrtValue.ortvalue_from_shape_and_type(
                spec.shape({"batch": batch}), np.dtype(spec.dtype), *self._device
            )
        return self._hidden_device[batch]

    def begin(self, batch: int) -> None:
        if not 1 <= batch <= self.max_batch:
            raise InputError(
                f"batch {batch} is outside 1..{self.max_batch} (the exported maximum)",
                f"use --batch <= {self.max_batch} or re-export with a larger --max-batch",
            )
        self._batch = batch
        self._bound_values = []
        for graph in STEP_GRAPHS:
            spec, bufs = self.specs[graph], self._buffers[graph]
            binding = self._session(graph).io_binding()
            for t in spec.inputs:
                value = self._hidden_value(batch) if t.name == "hidden" else self._value(_leading(bufs[t.name], t, batch))
                binding.bind_ortvalue_input(t.name, value)
            for t in spec.outputs:
                value = self._hidden_value(batch) if t.name == "hidden" else self._value(_leading(bufs[t.name], t, batch))
                binding.bind_ortvalue_output(t.name, value)
            self._bindings[graph] = binding
            copies = []
            for t in spec.outputs:
                if t.name.startswith("present_"):
                    cache = bufs["past_" + t.name[len("present_"):]][:batch]  # [b, H, L, D]
                    cache.fill(0)
                    copies.append((cache, bufs[t.name][:batch, :, 0, :]))  # row [b, H, D]
            self._row_copies[graph] = copies

    def _run_step(self, graph: str, stage: str, step: int) -> None:
        if self._batch == 0:
            raise RuntimeError("call begin(batch) before stepping")
        if not 0 <= step < self.dims.max_length:
            raise InputError(f"step {step} is outside the KV cache (0..{self.dims.max_length - 1})")
        bufs = self._buffers[graph]
        bufs["step"][0] = step
        start = time.perf_counter()
        self._sessions[graph].run_with_iobinding(self._bindings[graph])
        for cache, row in self._row_copies[graph]:
            cache[:, :, step, :] = row  # new K/V row into the preallocated cache, in place
        self._times[stage].append(time.perf_counter() - start)

    # ------------------------------------------------------------------ Backend protocol
    def position_step(self, content: np.ndarray, position: np.ndarray, segment: np.ndarray, step: int) -> np.ndarray:
        b = self._batch
        bufs = self._buffers["transformer_position_step"]
        bufs["content"][:b] = content
        bufs["position"][:b] = position
        bufs["segment"][:b] = segment
        self._run_step("transformer_position_step", "position_step", step)
        return bufs["position_logits"][:b].copy()  # the caller may mask it in place

    def content_step(self, next_position: np.ndarray, next_segment: np.ndarray, step: int) -> np.ndarray:
        b = self._batch
        bufs = self._buffers["transformer_content_step"]
        bufs["next_position"][:b] = next_position
        bufs["next_segment"][:b] = next_segment
        self._run_step("transformer_content_step", "content_step", step)
        return bufs["content_logits"][:b].copy()

    def prefill(self, content: np.ndarray, position: np.ndarray, segment: np.ndarray) -> np.ndarray:
        b, tokens = content.shape
        if b != self._batch:
            raise InputError(f"prefill batch {b} differs from begin({self._batch})")
        if not 2 <= tokens <= self.dims.max_length:
            raise InputError(f"prefill needs 2..{self.dims.max_length} known tokens, got {tokens}")
        feeds = {
            "content": np.ascontiguousarray(content, dtype=np.int64),
            "position": np.ascontiguousarray(position, dtype=np.int64),
            "segment": np.ascontiguousarray(segment, dtype=np.int64),
        }
        start = time.perf_counter()
        names = [t.name for t in self.specs["transformer_prefill"].outputs]
        outputs = dict(zip(names, self._session("transformer_prefill").run(names, feeds)))
        for graph, stack, rows in (
            ("transformer_position_step", "position", tokens),
            ("transformer_content_step", "content", tokens - 1),
        ):
            bufs = self._buffers[graph]
            for name in bufs:
                if name.startswith("past_"):
                    present = outputs[f"{stack}_present_{name[len('past_'):]}"]  # [b, H, rows, D]
                    bufs[name][:b, :, :rows, :] = present
        hidden = outputs["hidden"]
        if not self.hidden_on_device:
            self._buffers["transformer_position_step"]["hidden"][:b] = hidden
        else:
            self._hidden_value(b).update_inplace(np.ascontiguousarray(hidden))
        self._times["prefill"].append(time.perf_counter() - start)
        return np.asarray(outputs["position_logits"], dtype=np.float32)

    def _run_batched(self, graph: str, stage: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Whole-image graphs run once per generation; chunks of at most max_batch."""
        session = self._session(graph)
        count = next(iter(feeds.values())).shape[0]
        chunks: list[list[np.ndarray]] = []
        start = time.perf_counter()
        for lo in range(0, count, self.max_batch):
            chunks.append(session.run(None, {k: v[lo : lo + self.max_batch] for k, v in feeds.items()}))
        self._times[stage].append(time.perf_counter() - start)
        return [np.concatenate(parts) for parts in zip(*chunks)]

    def encode(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = np.ascontiguousarray(image, dtype=np.float32)
        h_coarse, h_fine = self._run_batched("encoder", "encoder", {"image": image})
        feeds = {"h_coarse": h_coarse, "h_fine": h_fine}
        if self.dims.router == "entropy":
            feeds["image"] = image
        grain, codes = self._run_batched("dgc", "dgc", feeds)
        return grain.astype(np.int64), codes.astype(np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        (image,) = self._run_batched("decoder", "decoder", {"codes": np.ascontiguousarray(codes, dtype=np.int64)})
        return image.astype(np.float32)

    def stage_times(self) -> dict[str, list[float]]:
        return {stage: list(times) for stage, times in self._times.items()}

    # ------------------------------------------------------------------ introspection (tests)
    def buffer_addresses(self) -> dict[str, int]:
        """Host address of every preallocated buffer and bound OrtValue (stable across steps)."""
        addresses = {
            f"{graph}/{name}": arr.ctypes.data for graph, bufs in self._buffers.items() for name, arr in bufs.items()
        }
        addresses.update({f"bound/{i}": v.data_ptr() for i, v in enumerate(self._bound_values)})
        return addresses
