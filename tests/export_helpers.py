"""Shared tiny model + export for the export tests (built once per pytest process)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

MAX_BATCH = 4
CALIB_IMAGES = 6


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """Smooth colour gradients with a few rectangles: real PNG files, varied enough that the
    router picks both grains."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    for i in range(n):
        img = np.stack([rng.uniform() * xx + rng.uniform() * yy + rng.uniform(0, 0.3) for _ in range(3)], -1)
        for _ in range(3):
            x0, y0 = rng.integers(0, size - 2, 2)
            img[y0 : y0 + rng.integers(2, size // 2), x0 : x0 + rng.integers(2, size // 2)] = rng.uniform(size=3)
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


@functools.lru_cache(maxsize=None)
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="dq-edge-export-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.lru_cache(maxsize=None)
def tiny_model_folder() -> Path:
    from dq_edge.models.transformer import build_transformer, save_transformer
    from dq_edge.models.vae import build_vae, save_vae

    folder = workdir() / "model"
    vae = build_vae("tiny", seed=0)
    save_vae(vae, folder)
    save_transformer(build_transformer("tiny", vae.token_layout(), seed=1), folder)
    return folder


@functools.lru_cache(maxsize=None)
def calib_folder() -> Path:
    from dq_edge.export.graphs import load_models

    size = load_models(tiny_model_folder()).image_size
    return write_images(workdir() / "calib", CALIB_IMAGES, size)


@functools.lru_cache(maxsize=None)
def tiny_export() -> Path:
    """fp32 + fp16 + int8 export of the tiny model."""
    from dq_edge.export.pipeline import ExportRequest, export_model

    out = workdir() / "export"
    req = ExportRequest(
        model=tiny_model_folder(), out=out, precisions=["fp32", "fp16", "int8"], max_batch=MAX_BATCH,
        calib_images=calib_folder(), calib_num=CALIB_IMAGES,
    )
    export_model(req)
    return out


def images(n: int, seed: int) -> np.ndarray:
    """float32 [n,3,H,W] in [-1,1] from the same generator as the calibration files."""
    from dq_edge.data.registry import load_dataset
    from dq_edge.data.batches import to_float

    from dq_edge.export.graphs import load_models

    size = load_models(tiny_model_folder()).image_size
    folder = write_images(workdir() / f"eval{seed}", n, size, seed=seed)
    return to_float(load_dataset(str(folder), split="all").images)
