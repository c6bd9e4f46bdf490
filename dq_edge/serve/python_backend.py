"""Triton Python backend model `dq_edge`: the class a model repository's `1/model.py` re-exports.

Runs inside Triton's Python backend stub (one process per model instance), where
`triton_python_backend_utils` is importable. Each `execute` receives the requests Triton's dynamic
batcher grouped; `ServeEngine.serve` generates them together and rejects bad requests one by
one: a rejected request gets INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT) with a one-line
reason, and the requests batched with it are answered normally.

Model parameters (config.pbtxt `parameters`): `engine` (export or engine folder, relative to the
version folder or absolute), `backend` (auto | ort-cpu | ort-cuda | ort-trt | trt), `precision`
(empty = the folder's default), `threads` (ONNX Runtime intra-op threads, empty = all cores).
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np

from dq_edge.errors import DQEdgeError, InputError
from dq_edge.serve.protocol import INPUTS

_USED_CAPSULE = ctypes.c_char_p(b"used_dltensor")  # module-level: a capsule keeps only the pointer


def _to_triton(pb, name: str, value: np.ndarray):
    """A Triton tensor from a numpy array through DLPack. The stub's numpy interop is built for
    numpy 1.x and misreads numpy 2 arrays ("output tensor shape does not match size of
    output"); DLPack does not depend on numpy's ABI and works the same with numpy 1.x. The stub
    renames a consumed capsule "used_dlpack" where the DLPack protocol (and numpy's capsule
    destructor) expect "used_dltensor"; renaming it keeps numpy from reporting an error for
    every output (the stub frees the tensor through the DLPack deleter either way)."""
    capsule = np.ascontiguousarray(value).__dlpack__()
    tensor = pb.Tensor.from_dlpack(name, capsule)
    set_name = ctypes.pythonapi.PyCapsule_SetName
    set_name.argtypes, set_name.restype = (ctypes.py_object, ctypes.c_char_p), ctypes.c_int
    set_name(capsule, _USED_CAPSULE)
    return tensor


def _from_triton(tensor) -> np.ndarray:
    """A request tensor as a numpy array, through DLPack: `as_numpy()` builds the array with
    the stub's numpy 1.x interop, which under numpy 2 repeats the first element in every row."""
    return np.array(np.from_dlpack(tensor), copy=True)  # own copy: the request's memory is Triton's


def model_parameters(config: dict) -> dict[str, str]:
    return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}


def engine_folder(parameters: dict[str, str], version_folder: Path) -> Path:
    if not parameters.get("engine"):
        raise InputError("the model config has no `engine` parameter", "rewrite the repository with `dq-edge export-triton`")
    folder = Path(parameters["engine"])
    return folder if folder.is_absolute() else version_folder / folder


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend

        from dq_edge.serve.engine import ServeEngine

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        parameters = model_parameters(config)
        version_folder = Path(args["model_repository"]) / args["model_version"]
        threads = parameters.get("threads")
        self.engine = ServeEngine.open(
            engine_folder(parameters, version_folder),
            backend=parameters.get("backend") or "auto",
            precision=parameters.get("precision") or None,
            threads=int(threads) if threads else None,
        )
        self._logger = pb_utils.Logger
        self._logger.log_info(
            f"dq_edge: {self.engine.backend.name} ({self.engine.runtime.precision}) on {self.engine.runtime.folder}: "
            f"{self.engine.runtime.reason}"
        )

    def execute(self, requests: list) -> list:
        pb = self._pb
        batch = []
        for request in requests:
            inputs = {}
            for decl in INPUTS:
                tensor = pb.get_input_tensor_by_name(request, decl.name)
                if tensor is not None:
                    inputs[decl.name] = _from_triton(tensor)
            batch.append(inputs)
        try:
            results = self.engine.serve(batch)
        except DQEdgeError as exc:  # a failure of the whole generation, not of one request
            self._logger.log_error(f"dq_edge: {exc.one_line()}")
            return [pb.InferenceResponse(error=pb.TritonError(exc.one_line(), pb.TritonError.INTERNAL)) for _ in requests]
        responses = []
        for result in results:
            if isinstance(result, InputError):
                error = pb.TritonError(result.one_line(), pb.TritonError.INVALID_ARG)
                responses.append(pb.InferenceResponse(error=error))
            else:
                tensors = [_to_triton(pb, name, value) for name, value in result.items()]
                responses.append(pb.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.engine = None
