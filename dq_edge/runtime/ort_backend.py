"""ONNX Runtime backend: exported graphs + IO binding over buffers allocated once.

The step graphs' buffers (KV caches [max_batch, heads, L, head_dim] per layer per stack, step
inputs, `hidden`, logits) are allocated in __init__ by `dq_edge.runtime.ort_buffers` and bound
once per `begin(batch)`; a step writes the token ids, runs, and stores the new K/V rows at row
`step` (the KV protocol of `dq_edge.graph_io`). Caches come in length buckets (64, 128, ...,
L rows; one contiguous buffer each, about twice one full cache in all): a step binds the
smallest bucket holding every row's prefix, so its attention reads R rows, not L; crossing a
bucket copies the kept rows once and rebinds. Nothing is allocated inside a step (a bucket
switch creates the new bindings' small OrtValue handles).

- CPU provider: host numpy buffers bound as OrtValue views; the CPU EP reads them live.
- CUDA / TensorRT providers: device memory of the device layer (`dq_edge.device`, cuda-python
  or pycuda) bound by pointer. ONNX Runtime copies a bound *host* input to the device once, at
  bind time (IOBinding.cc), so host buffers would be stale snapshots after the first step; on
  the device, caches never cross to the host and only logits come back.
- The TensorRT EP gets the typed ONNX as it is: no `trt_fp16_enable` / `trt_int8_enable`
  (weak-typing flags that may let TensorRT 10 run the fp32 islands in fp16 and that TensorRT 11
  removed); fp16 tensors and Q/DQ nodes in the graph carry the precision.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from dq_edge.artifact.graph_check import check_graph_outputs
from dq_edge.device import open_device
from dq_edge.errors import ArtifactMismatchError, BackendUnavailableError, InputError
from dq_edge.graph_io import PREFILL_GRAPH, STEP_GRAPH_OF, GraphDims, GraphSpec, cache_buckets, check_steps, graph_specs
from dq_edge.ort_import import import_onnxruntime
from dq_edge.runtime.ort_buffers import DeviceBuffers, HostBuffers
from dq_edge.runtime.timing import StageStats, StageTimes
from dq_edge.tokens import TokenLayout

ort = import_onnxruntime()

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
STEP_GRAPHS = tuple(STEP_GRAPH_OF.values())
DEFAULT_CPU_THREADS = 1


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
    # no trt_fp16_enable / trt_int8_enable: the typed ONNX carries the precision (module docstring)
    trt_options: dict[str, Any] = {"device_id": device_id}
    if cache_dir is not None:
        trt_options.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)})
    if spec is not None:
        trt_options.update(trt_profile_options(spec))
    return [("TensorrtExecutionProvider", trt_options), cuda, "CPUExecutionProvider"]


class OrtBackend:
    """`dq_edge.generation.backend.Backend` on ONNX Runtime (CPU, CUDA or TensorRT provider)."""

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
        smallest_bucket: int | None = 64,
    ):
        """`smallest_bucket`: cache rows of the smallest length bucket (graph_io.cache_buckets);
        None binds full-length caches only (every step then reads all L rows)."""
        if provider not in PROVIDERS:
            raise InputError(f"unknown ONNX Runtime provider {provider!r}", f"use one of {', '.join(PROVIDERS)}")
        if not provider_available(provider):
            raise BackendUnavailableError(
                f"ONNX Runtime here has no {PROVIDERS[provider]} (available: {', '.join(ort.get_available_providers())})",
                "pip uninstall -y onnxruntime && pip install 'dq-edge[cuda]' (onnxruntime-gpu; needs an NVIDIA GPU with CUDA"
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
        self._sessions: dict[str, Any] = {}
        self._times = StageTimes(("encoder", "dgc", "position_step", "content_step", "prefill", "decoder"))
        self._bindings: dict[str, Any] = {}
        self._batch = 0
        for graph in STEP_GRAPHS:  # step graphs are needed by every run: load them now
            self._session(graph)
        buckets = (dims.max_length,) if not smallest_bucket else cache_buckets(dims.max_length, smallest_bucket)
        # after the sessions: ORT has created the CUDA context the device layer then shares
        self._buffers: HostBuffers | DeviceBuffers = (
            HostBuffers(ort, self.specs, dims, max_batch, buckets) if provider == "cpu"
            else DeviceBuffers(open_device(device_id), device_id, self.specs, dims, max_batch, precision, buckets)
        )

    # ------------------------------------------------------------------ sessions and binding
    def _session(self, graph: str) -> Any:
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
            # the manifest's sizes (vocab, grids) must be the graph's own: else silent wrong tokens
            check_graph_outputs(str(path), session.get_outputs(), self.specs[graph], "re-run `dq-edge export` for this model")
            self._sessions[graph] = session
        return self._sessions[graph]

    def active_providers(self, graph: str = "transformer_position_step") -> list[str]:
        return self._session(graph).get_providers()

    def begin(self, batch: int) -> None:
        if not 1 <= batch <= self.max_batch:
            raise InputError(
                f"batch {batch} is outside 1..{self.max_batch} (the exported maximum)",
                f"use --batch <= {self.max_batch} or re-export with a larger --max-batch",
            )
        self._batch = batch
        self._bindings = self._buffers.bind(self._session, batch)

    def _run_step(self, graph: str, stage: str, feeds: dict[str, np.ndarray], step) -> np.ndarray:
        if self._batch == 0:
            raise RuntimeError("call begin(batch) before stepping")
        steps = check_steps(step, self._batch, self.dims.max_length)
        self._buffers.ensure_rows(int(steps.max()) + 1)  # the bucket holding every row's prefix and new row
        start = time.perf_counter()
        logits = self._buffers.step(self._sessions[graph], self._bindings[graph], graph, feeds, steps)
        self._times.add(stage, time.perf_counter() - start)
        return logits

    # ------------------------------------------------------------------ Backend protocol
    def position_step(self, content: np.ndarray, position: np.ndarray, segment: np.ndarray, step) -> np.ndarray:
        feeds = {"content": content, "position": position, "segment": segment}
        return self._run_step(STEP_GRAPH_OF["position"], "position_step", feeds, step)

    def content_step(self, next_position: np.ndarray, next_segment: np.ndarray, step) -> np.ndarray:
        feeds = {"next_position": next_position, "next_segment": next_segment}
        return self._run_step(STEP_GRAPH_OF["content"], "content_step", feeds, step)

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
        logits = self._buffers.prefill(self._session(PREFILL_GRAPH), feeds)
        self._times.add("prefill", time.perf_counter() - start)
        return logits

    def _run_batched(self, graph: str, stage: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Whole-image graphs run once per generation; chunks of at most max_batch."""
        session = self._session(graph)
        count = next(iter(feeds.values())).shape[0]
        chunks: list[list[np.ndarray]] = []
        start = time.perf_counter()
        for lo in range(0, count, self.max_batch):
            chunks.append(session.run(None, {k: v[lo : lo + self.max_batch] for k, v in feeds.items()}))
        self._times.add(stage, time.perf_counter() - start)
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

    def stage_times(self) -> dict[str, StageStats]:
        return self._times.snapshot()

    def reset_stage_times(self) -> None:
        self._times.reset()

    # ------------------------------------------------------------------ introspection (tests)
    def buffer_addresses(self) -> dict[str, int]:
        """Address of every preallocated buffer (host or device) and bound value: stable across steps."""
        return self._buffers.addresses()

    def close(self) -> None:
        """Release the buffers (device memory, pinned memory, stream) and the sessions."""
        self._buffers.close()
        self._bindings, self._sessions = {}, {}

    def __enter__(self) -> "OrtBackend":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()
