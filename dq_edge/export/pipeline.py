"""`dq-edge export`: model folder -> export folder (ONNX per graph and precision + manifest).

The whole folder is built in a temp sibling and swapped in at the end (atomic_dir): an
interrupted export leaves no file under a final name. Exporting the same model with the same
options again finds an identical, verified manifest and reports "up to date" without work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dq_edge import EXPORT_FORMAT_VERSION, __version__, precisions
from dq_edge.atomic import atomic_dir
from dq_edge.errors import ArtifactMismatchError, DQEdgeError, UsageError
from dq_edge.export.manifest import (
    MANIFEST_NAME,
    build_manifest,
    parse_precisions,
    read_manifest,
    same_export,
    verify_all,
    write_manifest,
)

Progress = Callable[[str], None]


@dataclass
class ExportRequest:
    model: Path
    out: Path
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    max_batch: int = 8
    opset: int = 17
    exporter: str = "legacy"
    calib_images: Path | None = None
    calib_dataset: str | None = None
    calib_num: int = 32
    force: bool = False

    def needs_calibration(self) -> bool:
        return any(precisions.get(p).needs_calibration for p in self.precisions)

    def options(self) -> dict[str, Any]:
        """Everything that changes the exported files (compared for "up to date")."""
        calib = None
        if self.needs_calibration():
            source = f"dataset:{self.calib_dataset}" if self.calib_dataset else f"images:{Path(self.calib_images).resolve()}"
            calib = {"source": source, "num": self.calib_num}
        return {"exporter": self.exporter, "calibration": calib}


@dataclass
class ExportResult:
    out: Path
    manifest: dict[str, Any]
    up_to_date: bool
    seconds: float


def validate(req: ExportRequest) -> None:
    req.precisions = parse_precisions(req.precisions)
    if req.max_batch < 1:
        raise UsageError(f"--max-batch {req.max_batch} is not positive", "pass --max-batch 1 or more")
    if req.calib_num < 1:
        raise UsageError(f"--calib-num {req.calib_num} is not positive", "pass --calib-num 1 or more")
    if req.calib_images is not None and req.calib_dataset is not None:
        raise UsageError("--calib-images and --calib-dataset are exclusive", "pass one calibration source")
    if req.needs_calibration() and req.calib_images is None and req.calib_dataset is None:
        calibrated = [p for p in req.precisions if precisions.get(p).needs_calibration]
        raise UsageError(
            f"{', '.join(calibrated)} needs calibration data",
            "pass --calib-images FOLDER (images of the model's size) or --calib-dataset NAME (emoji64, fmnist)",
        )
    if req.calib_images is not None and not Path(req.calib_images).exists():
        raise UsageError(f"calibration folder {req.calib_images} does not exist", "pass a folder of images")


def _refuse_or_reuse(req: ExportRequest, request_manifest: dict[str, Any]) -> dict[str, Any] | None:
    """An existing `out`: the same export -> its manifest (verified); else refuse without --overwrite."""
    out = req.out
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    if not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", "pass a new folder to --out")
    if not (out / MANIFEST_NAME).is_file():
        # never delete a folder we did not write, even with --overwrite
        raise UsageError(f"{out} is not empty and holds no dq-edge export", "pass a new or empty folder to --out")
    try:
        existing = read_manifest(out)
    except DQEdgeError:
        existing = None
    if existing is not None and not req.force and same_export(existing, request_manifest):
        try:
            verify_all(out)
            return existing
        except ArtifactMismatchError:
            pass  # a damaged copy of the same export: only --overwrite may replace it
    if not req.force:
        raise ArtifactMismatchError(
            f"{out} already holds a different (or damaged) export",
            "pass --overwrite to replace it, or choose another --out",
        )
    return None


def export_model(req: ExportRequest, progress: Progress | None = None) -> ExportResult:
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    validate(req)
    from dq_edge.models.folder import model_hash, read_config

    read_config(req.model)  # format version check before any heavy import
    mhash = model_hash(req.model)
    request = {
        "format_version": EXPORT_FORMAT_VERSION,
        "dq_edge_version": __version__,
        "max_batch": req.max_batch,
        "opset": req.opset,
        "options": req.options(),
        "source": {"model_hash": mhash},
        "precisions": req.precisions,
    }
    existing = _refuse_or_reuse(req, request)
    if existing is not None:
        return ExportResult(req.out, existing, True, time.perf_counter() - t0)

    from dq_edge.export.build import build_export_folder
    from dq_edge.export.manifest import graph_file_name
    from dq_edge.export.shared_weights import add_to_manifest, share_export_weights

    with atomic_dir(req.out, overwrite=True) as tmp:
        manifest_parts = build_export_folder(req, tmp, say)
        say("storing the weights the graphs share once")
        shared = share_export_weights(tmp, manifest_parts["graphs"], graph_file_name)  # before the graphs are hashed
        manifest = build_manifest(
            model_hash=mhash,
            model_path=str(Path(req.model).resolve()),
            max_batch=req.max_batch,
            opset=req.opset,
            options=req.options(),
            folder=tmp,
            **manifest_parts,
        )
        add_to_manifest(manifest, shared)
        write_manifest(tmp, manifest)
    return ExportResult(req.out, manifest, False, time.perf_counter() - t0)
