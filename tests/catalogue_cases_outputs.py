"""Bad-input catalogue: output paths (overlap with inputs, replacing, locks, single-file outputs)
and the argument checks that must come before slow work.

Every case fails before any work, so the setups build light folders: a real export manifest and
model config (the run reads them, validated, before it claims its output) beside placeholder
graph and weight files; the checks under test look at paths, not at the graphs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from catalogue import Case

SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "dq_edge" / "assets" / "model" / "config.json"

# locks the setups hold for the whole test session (a second holder in the same process conflicts
# exactly like another process would: flock is per open file)
_HELD_LOCKS: list = []


def _folder(path: Path, *files: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_text(f"user data: {name}\n")
    return path


def _inputs(tmp: Path) -> dict[str, str]:
    """An engine-like folder, a model-like folder, an image folder, a file and a user folder."""
    engine = _folder(tmp / "export", "decoder.fp32.onnx")
    shutil.copy(_real_manifest(), engine / "manifest.json")
    model = _folder(tmp / "model", "model.safetensors")
    shutil.copy(SHIPPED_CONFIG, model / "config.json")
    images = _folder(tmp / "images", "a.png", "b.png")
    user = _folder(tmp / "user", "holiday.txt")
    (tmp / "notes.txt").write_text("a file\n")
    return {"engine": str(engine), "model": str(model), "images": str(images), "user": str(user), "file": str(tmp / "notes.txt")}


def _real_manifest() -> Path:
    import export_helpers

    return export_helpers.tiny_export() / "manifest.json"


def _nested_engine(tmp: Path) -> dict[str, str]:
    _folder(tmp / "work" / "export")
    shutil.copy(_real_manifest(), tmp / "work" / "export" / "manifest.json")
    return {"engine": str(tmp / "work" / "export"), "parent": str(tmp / "work")}


def _symlink_into_engine(tmp: Path) -> dict[str, str]:
    d = _inputs(tmp)
    (tmp / "link").symlink_to(tmp / "export", target_is_directory=True)
    return {**d, "link": str(tmp / "link")}


def _lock_held(tmp: Path) -> dict[str, str]:
    from filelock import FileLock

    d = _inputs(tmp)
    lock = FileLock(str(tmp / ".out.lock"))
    lock.acquire()
    _HELD_LOCKS.append(lock)
    return d


def _old_export(tmp: Path) -> dict[str, str]:
    """A model folder with a real config and an export folder written without our marker."""
    d = _inputs(tmp)
    shutil.copy(SHIPPED_CONFIG, tmp / "model" / "config.json")
    old = _folder(tmp / "old-export", "decoder.fp32.onnx")
    (old / "manifest.json").write_text(json.dumps({"format": "dq-edge-export"}) + "\n")
    return {**d, "old": str(old)}


def _calibration(tmp: Path) -> dict[str, str]:
    d = _inputs(tmp)
    shutil.copy(SHIPPED_CONFIG, tmp / "model" / "config.json")
    _folder(tmp / "calib-empty", "README.txt")
    return d


def _train_data(tmp: Path) -> dict[str, str]:
    return _inputs(tmp)


RUN = ["run", "--engine", "{engine}"]
OVERLAP = "writing it could destroy the input"
NOT_OURS = "is not a folder dq-edge wrote"

CASES: list[Case] = [
    # --out overlapping an input
    Case("run-out-is-engine", "output-safety", [*RUN, "--out", "{engine}", "--overwrite"], OVERLAP, 2, _inputs),
    Case("run-out-inside-engine", "output-safety", [*RUN, "--out", "{engine}/gen"], "is inside the input", 2, _inputs),
    Case("run-out-contains-engine", "output-safety", ["run", "--engine", "{engine}", "--out", "{parent}", "--overwrite"],
         "contains the input", 2, _nested_engine),
    Case("run-out-symlink-to-engine", "output-safety", [*RUN, "--out", "{link}", "--overwrite"], OVERLAP, 2, _symlink_into_engine),
    Case("run-out-is-complete-image", "output-safety", [*RUN, "--complete", "{images}/a.png", "--out", "{images}/a.png"],
         OVERLAP, 2, _inputs),
    Case("sample-out-is-model", "output-safety", ["sample", "{model}", "--out", "{model}", "--overwrite"], OVERLAP, 2, _inputs),
    Case("reconstruct-out-is-model", "output-safety", ["reconstruct", "{model}", "--out", "{model}", "--force"], OVERLAP, 2, _inputs),
    Case("reconstruct-out-is-image-folder", "output-safety", ["reconstruct", "tiny", "{images}", "--out", "{images}", "--overwrite"],
         OVERLAP, 2, _inputs),
    Case("reconstruct-out-contains-image", "output-safety", ["reconstruct", "tiny", "{images}/a.png", "--out", "{images}"],
         "contains the input", 2, _inputs),
    Case("export-out-is-model", "output-safety", ["export", "{model}", "--out", "{model}", "--overwrite"], OVERLAP, 2, _inputs),
    Case("export-out-inside-calibration", "output-safety",
         ["export", "{model}", "--precision", "int8", "--calib-images", "{images}", "--out", "{images}/export"],
         "is inside the input", 2, _inputs),
    Case("build-engine-out-is-export", "output-safety", ["build-engine", "{engine}", "--out", "{engine}"], OVERLAP, 2, _inputs),
    Case("import-official-out-holds-ckpt", "output-safety",
         ["import-official", "--ckpt", "{user}/holiday.txt", "--config", "{file}", "--out", "{user}"], "contains the input", 2, _inputs),
    Case("compare-save-inputs-inside-export", "output-safety", ["compare", "{engine}", "--save-inputs", "{engine}/raw"],
         "is inside the input", 2, _inputs),
    Case("bench-json-inside-engine", "output-safety", ["bench", "--engine", "{engine}", "--json", "{engine}/bench.json"],
         "is inside the input", 2, _inputs),
    Case("train-out-is-data", "output-safety", ["train", "vae", "--data", "{images}", "--out", "{images}", "--steps", "1"],
         OVERLAP, 2, _train_data),
    Case("eval-recon-report-inside-data", "output-safety",
         ["eval", "recon", "{model}", "--data", "{images}", "--no-fid", "--out", "{images}/report.json"], "is inside the input", 2, _inputs),
    # replacing: only folders dq-edge wrote, never a file
    Case("run-out-not-empty", "output-safety", [*RUN, "--out", "{user}"], "is not empty", 2, _inputs),
    Case("run-overwrite-user-folder", "output-safety", [*RUN, "--out", "{user}", "--overwrite"], NOT_OURS, 2, _inputs),
    Case("run-out-is-file", "output-safety", [*RUN, "--out", "{file}", "--overwrite"], "exists and is not a folder", 2, _inputs),
    Case("sample-overwrite-user-folder", "output-safety", ["sample", "{model}", "--out", "{user}", "--overwrite"], NOT_OURS, 2, _inputs),
    Case("import-official-force-alias-user-folder", "output-safety",
         ["import-official", "--ckpt", "{file}", "--config", "{file}", "--out", "{user}", "--force"], NOT_OURS, 2, _inputs),
    Case("reconstruct-overwrite-user-folder", "output-safety", ["reconstruct", "tiny", "--resize", "--out", "{user}", "--overwrite"],
         NOT_OURS, 2, _inputs),
    Case("export-overwrite-unmarked-export", "output-safety", ["export", "{model}", "--out", "{old}", "--overwrite"],
         NOT_OURS, 2, _old_export),
    Case("build-engine-out-user-folder", "output-safety", ["build-engine", "{engine}", "--out", "{user}"], NOT_OURS, 2, _inputs),
    Case("eval-table-out-exists", "output-safety", ["eval", "table", "{user}/holiday.txt", "--out", "{file}"],
         "already exists", 2, _inputs),
    Case("bench-json-exists", "output-safety", ["bench", "--engine", "{engine}", "--json", "{file}"], "already exists", 2, _inputs),
    # a second writer fails at once
    Case("run-out-locked", "output-safety", [*RUN, "--out", "{tmp}/out"], "another dq-edge command is writing", 1, _lock_held),
    Case("reconstruct-out-locked", "output-safety", ["reconstruct", "tiny", "--resize", "--out", "{tmp}/out"],
         "another dq-edge command is writing", 1, _lock_held),
    # checks that come before slow work
    Case("run-class-before-export", "numbers", ["run", "--class", "99", "--out", "{tmp}/out"], "class id 99 is out of range", 1),
    Case("export-empty-calibration-folder", "images",
         ["export", "{model}", "--precision", "int8", "--calib-images", "{tmp}/calib-empty", "--out", "{tmp}/e"],
         "no images found", 1, _calibration),
]
