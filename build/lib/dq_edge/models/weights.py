"""A model folder's `model.safetensors`, checked before anything is allocated for it.

Order of checks when a model is loaded (`load_checked_tensors`):
1. config.json was validated by its schema (every size bounded: dq_edge.artifact.schemas);
2. the module is built on the meta device (shapes only, no memory) and its parameter names
   and shapes are compared with the safetensors *header* (no tensor data read);
3. only then are the tensors read (just this stage's), and each float tensor must be finite.
So a 2 KB config claiming a million residual blocks, or weights of another model, fail in
milliseconds with the names that differ, and NaN/Inf weights are refused with the tensor's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from dq_edge.errors import CheckpointError

WEIGHTS_NAME = "model.safetensors"
RECREATE_HINT = "re-create the model folder (`dq-edge train` or `dq-edge import-official`)"
_READ_ERRORS = (SafetensorError, OSError, ValueError, RuntimeError)  # safetensors reports bad headers as these


def _weights_path(folder: str | Path) -> Path:
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}", RECREATE_HINT)
    return path


def weights_header(folder: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the safetensors header only (the library bounds the header
    size and checks that the offsets fit the file, so a truncated file fails here)."""
    path = _weights_path(folder)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {name: tuple(fh.get_slice(name).get_shape()) for name in fh.keys()}
    except _READ_ERRORS as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}", RECREATE_HINT) from exc


def meta_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer name -> shape of the module `build` makes, built on the meta device."""
    with torch.device("meta"):
        module = build()
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")


def compare_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], where: str, what: str) -> None:
    missing = sorted(set(expected) - set(found))
    unknown = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unknown or wrong:
        parts = [f"{label}: {_listed(keys)}" for label, keys in (("missing", missing), ("unknown", unknown)) if keys]
        if wrong:
            first = wrong[0]
            parts.append(f"wrong shape: {_listed(wrong)} ({first} is {found[first]}, the config needs {expected[first]})")
        raise CheckpointError(
            f"{where}: weights do not match the {what} config ({'; '.join(parts)})",
            "config.json and model.safetensors come from different models; " + RECREATE_HINT,
        )


def read_tensors(folder: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """Tensors under `prefix.` with the prefix stripped; NaN/Inf are refused with the name."""
    path = _weights_path(folder)
    head = prefix + "."
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as fh:
            for name in fh.keys():
                if name.startswith(head):
                    tensors[name[len(head):]] = fh.get_tensor(name)
    except _READ_ERRORS as exc:
        raise CheckpointError(f"{path} is corrupt or unreadable: {exc}", RECREATE_HINT) from exc
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{path}: tensor {head}{name} holds NaN or Inf values",
                "the weights are corrupt (a diverged training run?); retrain or " + RECREATE_HINT,
            )
    return tensors


def load_checked_tensors(folder: str | Path, prefix: str, build: Callable[[], nn.Module], what: str) -> dict[str, torch.Tensor]:
    """This stage's tensors, after the header matched the module `build` makes (on meta)."""
    head = prefix + "."
    found = {k[len(head):]: shape for k, shape in weights_header(folder).items() if k.startswith(head)}
    compare_shapes(meta_shapes(build), found, str(folder), what)
    return read_tensors(folder, prefix)
