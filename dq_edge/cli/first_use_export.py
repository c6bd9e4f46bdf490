"""Export-on-first-use for `dq-edge run` / `bench` without an export folder: a model folder (the
shipped one by default) is exported to ONNX once into the cache, then reused. The shipped model's
fp32 export is installed with the package and used directly (no torch needed).

This lives in the CLI layer so the runtime never calls the exporter: exporting needs torch +
onnx; without them the user gets a typed error that says what to install or pass instead.
Cache layout: `$DQ_EDGE_CACHE/<model sha256[:16]>/<precision>/` (default `~/.cache/dq-edge`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dq_edge import precisions
from dq_edge.errors import ArtifactMismatchError, BackendUnavailableError, ConfigError
from dq_edge.outputs import cache_slot
from dq_edge.runtime.default_model import (
    DEFAULT_MAX_BATCH,
    export_cache_folder,
    is_model_folder,
    model_weights_sha256,
    shipped_export_folder,
    shipped_export_problem,
    shipped_model_folder,
)


def resolve_engine_folder(engine: Path | None, precision: str | None) -> tuple[Path, bool]:
    """(export or engine folder to open, exported_now): `engine` as given when it is an export
    or engine folder; a model folder (or the shipped model for None) exported once."""
    if engine is None:
        return ensure_default_export(precision or "fp32")
    if is_model_folder(engine):
        return ensure_export(engine, precision or "fp32")
    return Path(engine), False


def cached_export_ok(folder: Path, precision: str) -> bool:
    from dq_edge.artifact.export import load_export  # torch-free

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
    """(export folder, exported_now): the shipped export when it was made from these weights,
    else the cached export, made now when the cache has no valid copy."""
    model = Path(model)
    digest = model_weights_sha256(model)
    shipped = shipped_export_folder()
    if shipped_export_problem(digest, precision, shipped) is None:
        return shipped, False
    folder = export_cache_folder(model, precision, digest)
    with cache_slot(folder):  # waits while another process exports it; sweeps killed exports' temps
        return _export_into_cache(model, folder, precision)


def _export_into_cache(model: Path, folder: Path, precision: str) -> tuple[Path, bool]:
    if cached_export_ok(folder, precision):
        return folder, False
    missing = [m for m in ("torch", "onnx") if not _importable(m)]
    if missing:
        raise BackendUnavailableError(
            f"the model {model} must be exported to ONNX once, which needs {' and '.join(missing)} (not installed)",
            "pip install 'dq-edge[export]' and rerun (the export is cached), or pass --engine EXPORT_DIR "
            "(an export made by `dq-edge export` on any machine with torch)",
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
    from dq_edge.artifact import MODEL_KIND, read_artifact

    data = read_artifact(model, (MODEL_KIND,), "pass --engine with an int8 export").raw.get("data") or {}
    if data.get("dataset"):
        return None, str(data["dataset"]), 32
    raise ConfigError("the shipped model names no calibration data for int8", "pass --engine with an int8 export")
