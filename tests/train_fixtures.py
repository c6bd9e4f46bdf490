"""Shared test data for the trainer tests: a micro VAE config and tiny synthetic image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# ~60k parameters: a step takes ~0.1 s on 2 cores
MICRO_VAE = {
    "norm_groups": 4, "router_norm": "group-4", "ch": 8, "z_channels": 8, "embed_dim": 8, "dec_ch": 8,
    "n_codes": 16, "attn_resolutions": [], "dec_attn_resolutions": [],
}


def micro_config(out: Path, data: Path, **over) -> dict:
    cfg = dict(
        stage="vae", preset="tiny", data=str(data), out=str(out), steps=6, batch=4, lr=3e-3, warmup_steps=2,
        gan_start=3, checkpoint_every=3, log_every=1, disc_width=8, progress=False, vae=dict(MICRO_VAE),
    )
    cfg.update(over)
    return cfg


def make_images(folder: Path, n: int = 24, size: int = 16, classes: int = 0, seed: int = 0) -> Path:
    """Colored squares on white; with `classes`, one subfolder per class (square size by class)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        c = i % classes if classes else 0
        side = 4 + 3 * c if classes else int(rng.integers(4, 9))
        a = np.full((size, size, 3), 255, np.uint8)
        y, x = rng.integers(0, size - side, 2)
        a[y : y + side, x : x + side] = rng.integers(0, 200, 3)
        sub = folder / f"class{c}" if classes else folder
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(sub / f"{i}.png")
    return folder


def one_thread():
    """Generator for an autouse fixture: tiny convs run ~100x slower with 2 OpenMP threads when
    the 2 cores are busy (spin-waiting), so the trainer tests use one thread and restore it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
