"""Image IO for the runtime (numpy + Pillow only, no torch).

Model images are float32 [B, 3, H, W] in [-1, 1]; files are 8-bit RGB PNGs.
"""

from __future__ import annotations

import math
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

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


# A header claiming more pixels than this is refused before anything is decoded: 50 MP is far
# beyond any model's input (they are <= 1024 px a side) and bounds the memory one file can take.
MAX_PIXELS = 50_000_000
# 8-bit modes Pillow converts to RGBA exactly (palette transparency included)
_EIGHT_BIT = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
# 16-bit grayscale: read the values and scale 0..65535 -> 0..255 ourselves (Pillow's
# convert("RGB") clips them at 255, which turns a 16-bit grayscale image white). Mode "I" is
# 32-bit in general (its range is unknown) but 16-bit when it comes from a PNG.
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}


def read_rgb(source: str | Path | BinaryIO, name: str | None = None) -> Image.Image:
    """Any image file Pillow reads -> an 8-bit RGB image, transparency composited on white.

    The one reader for every image a user hands us (run --complete, reconstruct, datasets,
    eval). Every failure is an InputError naming the file: missing, not an image, truncated,
    a header that claims more than MAX_PIXELS (checked before decoding: Image.open is lazy),
    or a pixel format without an unambiguous 8-bit reading (float, 32-bit integer values).
    """
    label = name or str(source)
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise InputError(f"image {label} does not exist", "pass an existing image file")
    unreadable = "pass a PNG, JPEG or other image file Pillow can read"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise InputError(
                        f"image {label} is {width}x{height}: more than the {MAX_PIXELS:,} pixels this tool reads",
                        "resize it to the model's size first",
                    )
                if width < 1 or height < 1:
                    raise InputError(f"image {label} has no pixels ({width}x{height})", unreadable)
                img.load()
                return _to_rgb(img, label)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses headers past 2x its own limit inside Image.open, before our check runs
        raise InputError(f"image {label} has more than the {MAX_PIXELS:,} pixels this tool reads ({exc})",
                         "resize it to the model's size first") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        # OSError covers "image file is truncated" / broken data streams; the others are what
        # individual Pillow decoders raise on corrupt headers
        raise InputError(f"image {label} is not a readable image ({type(exc).__name__}: {exc})", unreadable) from exc


def _to_rgb(img: Image.Image, label: str) -> Image.Image:
    if img.mode in _SIXTEEN_BIT or (img.mode == "I" and img.format == "PNG"):
        values = np.asarray(img, dtype=np.int64)  # [H, W]
        gray = np.rint(np.clip(values, 0, 65535) * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if img.mode not in _EIGHT_BIT:
        raise InputError(
            f"image {label} has pixel mode {img.mode}, which has no unambiguous 8-bit reading",
            "save it as an 8-bit RGB/RGBA/grayscale PNG or JPEG",
        )
    if img.mode == "CMYK" or img.mode == "YCbCr":
        return img.convert("RGB")
    rgba = img.convert("RGBA")  # palette transparency (tRNS) and alpha channels alike
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def to_model_input(rgb: Image.Image) -> np.ndarray:
    """8-bit RGB image -> float32 [3, H, W] in [-1, 1]."""
    return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0  # [H, W, 3] -> [3, H, W]


def load_image(path: str | Path, size: int) -> np.ndarray:
    """A size x size image file -> float32 [1, 3, size, size] in [-1, 1].

    Transparent pixels are composited on white, as the training data pipeline does.
    """
    rgb = read_rgb(path)
    if rgb.size != (size, size):
        raise InputError(
            f"image {path} is {rgb.size[0]}x{rgb.size[1]} pixels, the model expects {size}x{size}",
            f"resize or crop the image to {size}x{size} first",
        )
    return to_model_input(rgb)[None].copy()  # [1, 3, H, W]
