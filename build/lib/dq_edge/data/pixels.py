"""Pixel helpers shared by the loaders: square crop + resize. Files are read by
`dq_edge.runtime.images.read_rgb` (every mode, transparency on white, typed errors)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def square_resize(im: Image.Image, size: int) -> Image.Image:
    """Center-crop to a square, then resize (bicubic) to size x size; no-op when already right."""
    w, h = im.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
    if im.size != (size, size):
        im = im.resize((size, size), Image.BICUBIC)
    return im


def pil_to_array(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.uint8).copy()  # [H, W, 3]
