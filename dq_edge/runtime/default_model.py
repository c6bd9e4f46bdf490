"""Where the shipped model and the runtime's cache live. Torch-free; exports nothing.

`dq-edge run` without `--engine` uses `dq_edge/assets/model/`; the CLI exports it (or any
model folder) to ONNX once into `$DQ_EDGE_CACHE/<model sha256[:16]>/<precision>/` (default
`~/.cache/dq-edge`), see dq_edge/cli/first_use_export.py. The runtime itself only opens
export and engine folders.
"""

from __future__ import annotations

import os
from pathlib import Path

from dq_edge.atomic import sha256_file
from dq_edge.errors import ConfigError

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "assets" / "model"


def shipped_model_folder() -> Path:
    folder = SHIPPED_MODEL
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ConfigError("no shipped model in this installation (dq_edge/assets/model/)", "pass --engine EXPORT_DIR")
    return folder


def cache_root() -> Path:
    return Path(os.environ.get("DQ_EDGE_CACHE") or Path.home() / ".cache" / "dq-edge").expanduser()


def is_model_folder(folder: str | Path) -> bool:
    """A folder with a model's files (their content is validated when the model is read)."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file() and not (folder / "manifest.json").exists()


def export_cache_folder(model: Path, precision: str) -> Path:
    digest = sha256_file(Path(model) / "model.safetensors")[:16]
    return cache_root() / digest / precision
