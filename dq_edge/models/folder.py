"""The model folder: `config.json` + `model.safetensors` (+ `thresholds.json` for the entropy router).

One folder holds both stages: config sections `vae` and (optionally) `transformer`, tensors
prefixed `vae.` and `transformer.`. `load_vae` and `load_transformer` read the same folder.

config.json:
    {"format": "dq-edge-model", "format_version": 1, "dq_edge_version": "...",
     "vae": {...}, "transformer": {...} | null, "tokens": {...TokenLayout} | null,
     "data": {...}, "training": {...}, "source": {...}}
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dq_edge import FORMAT_VERSION, __version__
from dq_edge.artifact import ArtifactKind, read_artifact_json
from dq_edge.atomic import atomic_dir, atomic_path, sha256_file
from dq_edge.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
THRESHOLDS_NAME = "thresholds.json"
FORMAT_NAME = "dq-edge-model"


MODEL_KIND = ArtifactKind(
    file_name=CONFIG_NAME,
    format_name=FORMAT_NAME,
    format_version=FORMAT_VERSION,
    label="model",
    folder_noun="a dq-edge model folder",
    file_noun="a dq-edge model config",
    wrong_kind_hint="pass a model folder, not an export or engine folder",
)


def read_config(folder: str | Path) -> dict[str, Any]:
    return read_artifact_json(
        folder,
        MODEL_KIND,
        "pass a folder written by this version's `dq-edge train` or `dq-edge import-official`",
    )


def read_tensors(folder: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """Tensors under `prefix.` with the prefix stripped."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}", "re-create the model folder")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is corrupt or unreadable: {exc}", "re-create the model folder") from exc
    head = prefix + "."
    return {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}


def write_model_folder(
    out: str | Path,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    extra_files: dict[str, bytes] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the whole folder atomically. `config` holds the sections (vae, transformer, ...);
    `tensors` are already prefixed (`vae.encoder...`, `transformer....`)."""
    out = Path(out)
    full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "dq_edge_version": __version__, **config}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / WEIGHTS_NAME))
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        (tmp / CONFIG_NAME).write_text(json.dumps(full, indent=2) + "\n")
    return out


def update_model_folder(folder: str | Path, section: str, section_config: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Add or replace one stage (`vae` or `transformer`) in an existing folder, atomically per file."""
    folder = Path(folder)
    cfg = read_config(folder)
    old = load_file(str(folder / WEIGHTS_NAME))
    merged = {k: v for k, v in old.items() if not k.startswith(section + ".")}
    merged.update({f"{section}.{k}": v.detach().contiguous().cpu() for k, v in tensors.items()})
    cfg[section] = section_config
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(merged, str(tmp))
    with atomic_path(folder / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(cfg, indent=2) + "\n")


def model_hash(folder: str | Path) -> str:
    """sha256 of the weights file; export manifests record it to detect stale exports."""
    return sha256_file(Path(folder) / WEIGHTS_NAME)


def copy_model_folder(src: str | Path, dst: str | Path) -> None:
    shutil.copytree(src, dst)
