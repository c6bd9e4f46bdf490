"""The `--no-model` baseline: the same tokens packed with fixed-length fields.

Fields, most significant bit first, zero-padded to whole bytes:
- the class: ceil(log2 C) bits (nothing for unconditional or one-class models);
- the coarse positions in raster order, ceil(log2(Nc + 1)) bits each, then the value Nc (EOS);
- the codes of the coarse regions, then those of the fine cells, ceil(log2 K) bits each.
Fine positions are not stored: they are the fine regions' cells in raster order, which the
coarse positions already fix (the same rule the entropy coder's grammar uses).
"""

from __future__ import annotations

import math

import numpy as np

from dq_edge.codec.container import DqtFormatError
from dq_edge.tokens import TokenLayout

_HINT = "pass an undamaged .dqt file"


def field_bits(n: int) -> int:
    """Bits of a field holding 0..n-1."""
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def max_payload_bytes(layout: TokenLayout) -> int:
    bits = field_bits(layout.n_classes) + (layout.n_coarse + 1) * field_bits(layout.n_coarse + 1)
    return (bits + layout.n_fine * field_bits(layout.n_codes) + 7) // 8


def _bits(values: np.ndarray, width: int) -> np.ndarray:
    """int [n] -> uint8 bits [n * width], most significant first."""
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((np.asarray(values, dtype=np.int64)[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)


def pack(layout: TokenLayout, cls: int | None, coarse_pos: np.ndarray, codes: np.ndarray) -> bytes:
    """cls, coarse positions int [m] (increasing), codes int [n] (coarse then fine) -> bytes."""
    nc = layout.n_coarse
    parts = [
        _bits(np.array([cls or 0]), field_bits(layout.n_classes)),
        _bits(np.append(coarse_pos, nc), field_bits(nc + 1)),
        _bits(codes, field_bits(layout.n_codes)),
    ]
    return np.packbits(np.concatenate(parts)).tobytes()


class _BitReader:
    def __init__(self, payload: bytes):
        self.bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))  # bounded by the container
        self.pos = 0

    def read(self, count: int, width: int) -> np.ndarray:
        end = self.pos + count * width
        if end > len(self.bits):
            raise DqtFormatError("the fixed-length .dqt payload is truncated", _HINT)
        chunk = self.bits[self.pos : end].reshape(count, width).astype(np.int64)  # [count, width]
        self.pos = end
        return chunk @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64)) if width else np.zeros(count, np.int64)


def unpack(layout: TokenLayout, payload: bytes) -> tuple[int | None, np.ndarray, np.ndarray]:
    """bytes -> (cls, grain int64 [Hc, Wc] (1 = fine), codes in token order int64 [n])."""
    nc = layout.n_coarse
    reader = _BitReader(payload)
    cls = int(reader.read(1, field_bits(layout.n_classes))[0]) if layout.n_classes else None
    if cls is not None and cls >= layout.n_classes:
        raise DqtFormatError(f"the .dqt payload holds class {cls}, the model has {layout.n_classes}", _HINT)
    width = field_bits(nc + 1)
    coarse: list[int] = []
    while True:  # at most nc + 1 reads: positions must increase
        pos = int(reader.read(1, width)[0])
        if pos == nc:
            break
        if pos > nc or (coarse and pos <= coarse[-1]):
            raise DqtFormatError("the .dqt payload holds coarse positions out of order or range", _HINT)
        coarse.append(pos)
    grain = np.ones(nc, dtype=np.int64)
    grain[coarse] = 0
    n_codes = len(coarse) + (nc - len(coarse)) * (layout.n_fine // nc)
    codes = reader.read(n_codes, field_bits(layout.n_codes))
    if (codes >= layout.n_codes).any():
        raise DqtFormatError("the .dqt payload holds a code outside the codebook", _HINT)
    if len(reader.bits) - reader.pos >= 8:
        raise DqtFormatError("the fixed-length .dqt payload is longer than its tokens", _HINT)
    return cls, grain.reshape(layout.coarse_hw), codes
