"""Deserialising plan files and checking what TensorRT says about an engine's IO.

`io_signature` reads what the engine itself declares (TensorRT 10.3 / 11.x `ICudaEngine`:
`get_tensor_mode`, `get_tensor_dtype`, `get_tensor_shape`, with -1 for dynamic dims) and
`check_engine_io` compares it with graph_io's spec before any buffer is sized from the spec:
an engine whose IO type differs (a weakly typed build, a TensorRT that casts int64 IO) would
otherwise be fed bytes of the wrong width without any error.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from dq_edge.errors import ArtifactMismatchError
from dq_edge.graph_io import GraphSpec

Signature = dict[str, tuple[str, str, tuple[int, ...]]]  # name -> (mode, numpy dtype name, dims, -1 = dynamic)

# tensorrt.DataType member -> numpy dtype name (tensorrt.nptype lacks INT64 in some 10.x wheels)
TRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "INT8": "int8",
              "BOOL": "bool", "UINT8": "uint8", "BF16": "bfloat16", "FP8": "float8", "INT4": "int4"}


class EngineLoader(Protocol):
    tensorrt_version: str

    def load(self, path: Path) -> Any: ...
    def context(self, engine: Any, scratch_ptr: int, scratch_size: int) -> Any: ...
    def io_signature(self, engine: Any) -> Signature: ...


class TensorRTLoader:
    """Deserialises plan files and creates contexts that use a shared scratch region."""

    def __init__(self) -> None:
        self._trt = trt = importlib.import_module("tensorrt")
        self.tensorrt_version = str(trt.__version__)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)

    def load(self, path: Path) -> Any:
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())  # bytes freed on return
        if engine is None:
            raise ArtifactMismatchError(f"TensorRT could not deserialize {path}", "rebuild it with `dq-edge build-engine`")
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            # all buffers are device buffers at fixed addresses: a shape tensor would need host memory
            if engine.is_shape_inference_io(name):
                raise ArtifactMismatchError(
                    f"input {name} of {path.name} became a TensorRT shape tensor",
                    "re-export with this dq-edge and run `dq-edge check EXPORT_DIR` (data inputs must not feed shapes)",
                )
        return engine

    def io_signature(self, engine: Any) -> Signature:
        trt = self._trt
        sig: Signature = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
            dtype = str(engine.get_tensor_dtype(name)).rsplit(".", 1)[-1]
            sig[name] = (mode, TRT_DTYPES.get(dtype, dtype), tuple(int(d) for d in engine.get_tensor_shape(name)))
        return sig

    def context(self, engine: Any, scratch_ptr: int, scratch_size: int) -> Any:
        strategy = self._trt.ExecutionContextAllocationStrategy.USER_MANAGED
        ctx = engine.create_execution_context(strategy)
        setter = getattr(ctx, "set_device_memory", None) or getattr(ctx, "set_device_memory_v2", None)
        if setter is not None:  # (memory, size): TensorRT >= 10.1
            setter(scratch_ptr, scratch_size)
        else:
            ctx.device_memory = scratch_ptr
        return ctx


def expected_signature(spec: GraphSpec) -> Signature:
    """What a strongly typed build of `spec` declares: ONNX types, -1 for every symbolic dim."""
    sig: Signature = {}
    for mode, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        for t in tensors:
            sig[t.name] = (mode, t.dtype, tuple(d if isinstance(d, int) else -1 for d in t.dims))
    return sig


def check_engine_io(graph: str, actual: Signature, spec: GraphSpec, hint: str) -> None:
    expected = expected_signature(spec)
    if set(actual) != set(expected):
        raise ArtifactMismatchError(f"engine {graph} has IO {sorted(actual)}, expected {sorted(expected)}", hint)
    for name, want in expected.items():
        got = actual[name]
        if got != want:
            raise ArtifactMismatchError(
                f"engine {graph}: {name} is {got[0]} {got[1]} {list(got[2])}, this dq-edge expects {want[0]} {want[1]} {list(want[2])}",
                hint,
            )
