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
from safetensors.torch import load_file, save_file

from dq_edge import FORMAT_VERSION, __version__
from dq_edge.artifact.kinds import CONFIG_NAME, MODEL_KIND, MODEL_RECREATE_HINT
from dq_edge.artifact.reader import read_artifact_json
from dq_edge.atomic import atomic_dir, atomic_path, sha256_file
from dq_edge.models.weights import load_checked_tensors, read_tensors, weights_header

WEIGHTS_NAME = "model.safetensors"
THRESHOLDS_NAME = "thresholds.json"
FORMAT_NAME = MODEL_KIND.format_name
__all__ = [
    "CONFIG_NAME", "MODEL_KIND", "THRESHOLDS_NAME", "WEIGHTS_NAME", "copy_model_folder", "load_checked_tensors",
    "model_hash", "read_config", "read_tensors", "update_model_folder", "weights_header", "write_model_folder",
]


def read_config(folder: str | Path) -> dict[str, Any]:
    """config.json, validated against its schema (every size bounded) before anything is built."""
    return read_artifact_json(folder, MODEL_KIND, MODEL_RECREATE_HINT)


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
