"""Open MODEL for the codec: a model folder (torch backend, imported lazily) or an export
folder (ONNX Runtime: encoder + dgc give the codes, the step graphs the probabilities, the
decoder the image). Also the model's fingerprint and the bounds a .dqt file is checked against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from dq_edge.atomic import sha256_file
from dq_edge.codec.container import Limits
from dq_edge.codec.fixed_coder import max_payload_bytes
from dq_edge.codec.frequencies import PROB_BITS
from dq_edge.codec.stepper import Backend
from dq_edge.errors import ConfigError, InputError, UsageError
from dq_edge.tokens import TokenLayout

TORCH = "torch"
BACKENDS = ("auto", TORCH, "ort-cpu", "ort-cuda", "ort-trt")
_MODEL_HINT = "pass a model folder (config.json + model.safetensors) or an export folder from `dq-edge export`"


@dataclass
class CodecModel:
    backend: Backend
    layout: TokenLayout
    image_size: int
    fingerprint: str  # sha256 hex of the model weights (model.safetensors)
    backend_name: str  # "torch", "ort-cpu", ...
    precision: str
    folder: Path

    @property
    def limits(self) -> Limits:
        return Limits(self.fingerprint, self.image_size, self.layout, max_payload(self.layout))


def max_payload(layout: TokenLayout) -> int:
    """Bytes a payload of this model can need, whichever coder: the range coder spends at most
    PROB_BITS bits per symbol (2 symbols per token, plus the class) plus two words of flush."""
    symbols = 2 * layout.max_length + 1
    words = math.ceil(symbols * PROB_BITS / 32) + 2
    return max(4 * words, max_payload_bytes(layout))


def open_model(
    model: str | Path, backend: str = "auto", precision: str | None = None, threads: int | None = None
) -> CodecModel:
    folder = Path(model)
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}", f"choose from {', '.join(BACKENDS)}")
    if not folder.is_dir():
        raise InputError(f"model {folder} does not exist or is not a folder", _MODEL_HINT)
    if (folder / "manifest.json").is_file():
        return _open_export(folder, backend, precision, threads)
    if (folder / "config.json").is_file():
        return _open_model_folder(folder, backend, precision)
    raise ConfigError(f"{folder} is neither a model folder nor an export folder", _MODEL_HINT)


def _open_export(folder: Path, backend: str, precision: str | None, threads: int | None) -> CodecModel:
    from dq_edge.export.manifest import read_manifest
    from dq_edge.runtime.session import open_runtime

    if backend == TORCH:
        raise UsageError(f"{folder} is an ONNX export; the torch backend runs model folders", "pass the model folder, or --backend ort-cpu")
    runtime = open_runtime(folder, backend, precision, threads=threads, max_batch=None)
    if runtime.kind != "export":
        raise ConfigError(f"{folder} is not an ONNX export folder", _MODEL_HINT)
    manifest = read_manifest(folder)
    fingerprint = str((manifest.get("source") or {}).get("model_hash") or "")
    if len(fingerprint) != 64:
        raise ConfigError(f"{folder}/manifest.json records no model sha256", f"re-run `dq-edge export MODEL --out {folder} --overwrite`")
    return CodecModel(
        runtime.backend, runtime.layout, runtime.backend.dims.image_size, fingerprint, runtime.backend.name,
        runtime.precision, folder,
    )


def _open_model_folder(folder: Path, backend: str, precision: str | None) -> CodecModel:
    if backend not in ("auto", TORCH):
        raise UsageError(f"a model folder runs on the torch backend, not {backend}", "export it with `dq-edge export` for ONNX Runtime")
    if precision not in (None, "fp32"):
        raise UsageError(f"the torch backend runs fp32, not {precision}", "omit --precision, or export the model for other precisions")
    from dq_edge.models.vae import load_vae  # torch, imported only for model folders
    from dq_edge.models.transformer import load_transformer
    from dq_edge.models.torch_backend import TorchBackend

    vae = load_vae(folder)
    transformer = load_transformer(folder)
    torch_backend = TorchBackend(transformer, vae, max_batch=1)
    return CodecModel(
        torch_backend, transformer.layout, int(vae.config.image_size), sha256_file(folder / "model.safetensors"),
        TORCH, "fp32", folder,
    )
