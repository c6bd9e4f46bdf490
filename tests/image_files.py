"""Image files a user might hand us, good and bad, written without big allocations."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 20_000) -> Path:
    """A 200-byte PNG whose header claims side x side RGB pixels (400 MP for the default)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def bomb_png_64mp(path: Path) -> Path:
    return bomb_png(path, side=8_000)


def gray16_png(path: Path, size: int = 16) -> Path:
    """A 16-bit grayscale PNG, a horizontal ramp 0..65535 (Pillow opens it as mode I;16)."""
    ramp = np.linspace(0, 65535, size).round().astype(np.uint16)
    Image.fromarray(np.tile(ramp, (size, 1))).save(path)
    return path


def rgb_png(path: Path, size: int = 16, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def truncated_png(path: Path, size: int = 64) -> Path:
    rgb_png(path, size)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def not_an_image(path: Path) -> Path:
    path.write_bytes(b"this is text, not pixels\n")
    return path


def float_tiff(path: Path, size: int = 16) -> Path:
    Image.fromarray(np.random.default_rng(0).random((size, size), dtype=np.float32)).save(path, format="TIFF")
    return path
