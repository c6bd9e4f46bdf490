"""Image IO for the runtime (numpy + Pillow only, no torch).

Model images are float32 [B, 3, H, W] in [-1, 1]; files are 8-bit RGB PNGs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dq_edge.atomic import atomic_path
from dq_edge.errors import InputError


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3]. Decoder outputs are unclamped."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B,3,H,W], got {images.shape}")
    scaled = (np.clip(images.astype(np.float32), -1.0, 1.0) + 1.0) * 127.5
    return np.rint(scaled).astype(np.uint8).transpose(0, 2, 3, 1)  # [B, H, W, 3]


def make_grid(images: np.ndarray, columns: int | None = None, pad: int = 2, background: int = 255) -> np.ndarray:
    """uint8 [B, H, W, 3] -> one uint8 [rows*(H+pad)+pad, cols*(W+pad)+pad, 3] mosaic."""
    count, height, width, _ = images.shape
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    grid = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, 3), background, np.uint8)
    for i in range(count):
        top = pad + (i // columns) * (height + pad)
        left = pad + (i % columns) * (width + pad)
        grid[top : top + height, left : left + width] = images[i]
    return grid


def save_png(path: str | Path, image: np.ndarray) -> None:
    """uint8 [H, W, 3] -> PNG, written atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(image, mode="RGB").save(tmp, format="PNG")


def load_image(path: str | Path, size: int) -> np.ndarray:
    """A size x size image file -> float32 [1, 3, size, size] in [-1, 1].

    Transparent pixels are composited on white, as the training data pipeline does.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} does not exist", "pass an existing PNG/JPEG file to --complete")
    try:
        with Image.open(path) as img:
            img.load()
            rgba = img.convert("RGBA")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path} is not a readable image: {exc}", "pass a PNG or JPEG file") from exc
    if rgba.size != (size, size):
        raise InputError(
            f"{path} is {rgba.size[0]}x{rgba.size[1]} pixels, the model expects {size}x{size}",
            f"resize or crop the image to {size}x{size} first",
        )
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.float32)  # [H, W, 3]
    return (rgb / 127.5 - 1.0).transpose(2, 0, 1)[None].copy()  # [1, 3, H, W]
