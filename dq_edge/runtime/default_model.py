"""Model folders exported to ONNX on first use into a cache folder (the shipped model by default).

`dq-edge run` without `--engine` uses `dq_edge/assets/model/`; `--engine MODEL_FOLDER` (a
folder written by `dq-edge train` / `import-official`) works the same way. The export lives in
`$DQ_EDGE_CACHE/<model sha256[:16]>/<precision>/` (default `~/.cache/dq-edge`). Exporting needs
torch + onnx once; later runs only need numpy + onnxruntime. Torch is imported only inside
`ensure_export` when an export is actually needed.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from dq_edge import precisions
from dq_edge.atomic import sha256_file
from dq_edge.errors import ArtifactMismatchError, BackendUnavailableError, ConfigError

DEFAULT_MAX_BATCH = 8
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "assets" / "model"


def shipped_model_folder() -> Path:
    folder = SHIPPED_MODEL
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ConfigError("no shipped model in this installation (dq_edge/assets/model/)", "pass --engine EXPORT_DIR")
    return folder


def cache_root() -> Path:
    return Path(os.environ.get("DQ_EDGE_CACHE") or Path.home() / ".cache" / "dq-edge").expanduser()


def is_model_folder(folder: str | Path) -> bool:
    path = Path(folder) / "config.json"
    if not path.is_file() or not (Path(folder) / "model.safetensors").is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == "dq-edge-model"
    except (json.JSONDecodeError, AttributeError):
        return False


def export_cache_folder(model: Path, precision: str) -> Path:
    digest = sha256_file(model / "model.safetensors")[:16]
    return cache_root() / digest / precision


def cached_export_ok(folder: Path, precision: str) -> bool:
    from dq_edge.export.manifest import load_export  # torch-free

    if not (folder / "manifest.json").is_file():
        return False
    try:
        load_export(folder, precision)
    except (ArtifactMismatchError, ConfigError):
        return False
    return True


def ensure_default_export(precision: str) -> tuple[Path, bool]:
    """(export folder, exported_now) of the shipped model."""
    return ensure_export(shipped_model_folder(), precision)


def ensure_export(model: Path, precision: str) -> tuple[Path, bool]:
    """(export folder, exported_now). Exports `model` when the cache has no valid copy."""
    model = Path(model)
    folder = export_cache_folder(model, precision)
    if cached_export_ok(folder, precision):
        return folder, False
    missing = [m for m in ("torch", "onnx") if not _importable(m)]
    if missing:
        raise BackendUnavailableError(
            f"the model {model} must be exported to ONNX once, which needs {' and '.join(missing)} (not installed)",
            "pip install 'dq-edge[export]' and rerun (the export is cached), or pass --engine EXPORT_DIR",
        )
    from dq_edge.export.pipeline import ExportRequest, export_model  # needs torch + onnx

    request = ExportRequest(model=model, out=folder, precisions=[precision], max_batch=DEFAULT_MAX_BATCH, force=True)
    if precisions.get(precision).needs_calibration:
        request.calib_images, request.calib_dataset, request.calib_num = _calibration_source(model)
    export_model(request)
    return folder, True


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _calibration_source(model: Path) -> tuple[Path | None, str | None, int]:
    """int8 calibration for the shipped model: the sample images installed beside it (always
    present, of the model's size), else its training dataset named in config.json (needs
    `dq-edge data prepare NAME`)."""
    samples = model.parent / "samples"
    pictures = sorted(samples.glob("*.png")) if samples.is_dir() else []
    if pictures:
        return samples, None, len(pictures)
    data = json.loads((model / "config.json").read_text()).get("data") or {}
    if data.get("dataset"):
        return None, str(data["dataset"]), 32
    raise ConfigError("the shipped model names no calibration data for int8", "pass --engine with an int8 export")
