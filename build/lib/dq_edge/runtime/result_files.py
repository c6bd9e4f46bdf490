"""The files of a `dq-edge run` / `dq-edge sample` output folder, and how to find its images.

Writers name the per-image files with `image_name`; `tokens.npz` records one sequence per image,
so it is the record of which files are generated samples (a grid, a preview or a user's own file
in the same folder is not one). Torch-free: eval and the runtime both read it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dq_edge.errors import InputError

TOKENS_FILE = "tokens.npz"
GRID_FILE = "grid.png"
MAX_RECORDED_IMAGES = 1_000_000  # a tokens file claiming more is not one we wrote


def image_name(index: int) -> str:
    """File name of generated image `index` (0-based)."""
    return f"image_{index:04d}.png"


def recorded_images(folder: str | Path) -> list[Path]:
    """The per-image files a run/sample folder records, in order; every one must exist."""
    folder = Path(folder)
    record = folder / TOKENS_FILE
    hint = "pass the output folder of `dq-edge run` or `dq-edge sample` (it holds tokens.npz), or a model folder"
    if not record.is_file():
        raise InputError(f"{folder} has no {TOKENS_FILE}: it is not a folder of generated samples", hint)
    try:
        with np.load(record, allow_pickle=False) as tokens:
            lengths = tokens["lengths"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{record} is not a tokens file written by dq-edge: {type(exc).__name__}: {exc}", hint) from exc
    if lengths.ndim != 1 or not 0 < len(lengths) <= MAX_RECORDED_IMAGES:
        raise InputError(f"{record} records no images (lengths has shape {lengths.shape})", hint)
    paths = [folder / image_name(i) for i in range(len(lengths))]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise InputError(
            f"{folder} records {len(paths)} images but {len(missing)} are missing ({', '.join(missing[:3])})",
            "regenerate the folder; FID/KID over a partial set would not be comparable",
        )
    return paths
