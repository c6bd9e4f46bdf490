"""Grain map + code map <-> token sequences (docs/design.md §2). Torch-free (numpy only).

Per sample: `[start, coarse..., EOS, start, fine..., EOS]`, then right padding.
- coarse stream (segment 0): every region coded coarsely, raster order over the coarse grid;
  its content is the region's code (the code map repeats it over the region's fine cells).
- fine stream (segment 1): every fine cell of the fine regions, raster order over the whole
  fine grid (the official "row-first" order).
- start tokens: SOS for unconditional models, the class token for class-conditional ones
  (content K+2+c, coarse position Nc+2+c, fine position Nf+2+c).
- EOS tokens carry content EOS (K+1) and the stream's position EOS.
- padding: content PAD (K), fine position PAD (Nf), segment 1 (padding follows the fine stream).

Grain maps use 1 = fine, 0 = coarse (as the DGC graph outputs them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dq_edge.errors import InputError
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout


@dataclass
class TokenBatch:
    """Right-padded token sequences: content, position, segment int64 [B, T]; lengths int64 [B]."""

    content: np.ndarray
    position: np.ndarray
    segment: np.ndarray
    lengths: np.ndarray

    @property
    def batch(self) -> int:
        return int(self.content.shape[0])

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = int(self.lengths[i])
        return self.content[i, :n], self.position[i, :n], self.segment[i, :n]


def region_ratio(layout: TokenLayout) -> int:
    """Fine cells per coarse region side (2 for the dual-grain models)."""
    (hc, wc), (hf, wf) = layout.coarse_hw, layout.fine_hw
    r = hf // hc
    if r * hc != hf or r * wc != wf or r < 1:
        raise InputError(f"fine grid {layout.fine_hw} is not a multiple of coarse grid {layout.coarse_hw}")
    return r


def fine_cell_mask(layout: TokenLayout, grain: np.ndarray) -> np.ndarray:
    """Grain map [..., Hc, Wc] (1 = fine) -> bool map [..., Hf, Wf] of cells inside fine regions."""
    r = region_ratio(layout)
    return np.repeat(np.repeat(np.asarray(grain) == 1, r, axis=-2), r, axis=-1)


def _check_class(layout: TokenLayout, cls: int | None) -> None:
    """One sample's class id, by the one class validator (the null class is a valid start)."""
    from dq_edge.generation.requests import check_classes  # lazy: dq_edge.generation imports this module

    check_classes(layout, None if cls is None else [cls], 1, allow_null=True)


def encode_tokens(
    layout: TokenLayout, grain: np.ndarray, codes: np.ndarray, cls: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sample: grain [Hc,Wc], codes [Hf,Wf] -> content, position, segment int64 [T]."""
    grain = np.asarray(grain)
    codes = np.asarray(codes)
    if grain.shape != tuple(layout.coarse_hw) or codes.shape != tuple(layout.fine_hw):
        raise InputError(
            f"grain {grain.shape} / codes {codes.shape} do not match grids {layout.coarse_hw} / {layout.fine_hw}"
        )
    _check_class(layout, cls)
    r = region_ratio(layout)
    coarse_pos = np.flatnonzero(grain.reshape(-1) == 0)
    # a coarse region's code is the one at its top-left fine cell
    coarse_codes = codes[::r, ::r].reshape(-1)[coarse_pos]
    fine_pos = np.flatnonzero(fine_cell_mask(layout, grain).reshape(-1))
    fine_codes = codes.reshape(-1)[fine_pos]
    K = layout.n_codes
    content = np.concatenate(
        [[layout.content_start(cls)], coarse_codes, [K + 1], [layout.content_start(cls)], fine_codes, [K + 1]]
    )
    position = np.concatenate(
        [
            [layout.position_start(SEGMENT_COARSE, cls)],
            coarse_pos,
            [layout.position_eos(SEGMENT_COARSE)],
            [layout.position_start(SEGMENT_FINE, cls)],
            fine_pos,
            [layout.position_eos(SEGMENT_FINE)],
        ]
    )
    n_coarse = len(coarse_pos) + 2
    segment = np.concatenate([np.full(n_coarse, SEGMENT_COARSE), np.full(len(fine_pos) + 2, SEGMENT_FINE)])
    return content.astype(np.int64), position.astype(np.int64), segment.astype(np.int64)


def _outside(ids: np.ndarray, hi: int) -> bool:
    return bool(((ids < 0) | (ids >= hi)).any())


def decode_tokens(
    layout: TokenLayout, content: np.ndarray, position: np.ndarray, segment: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One sample's tokens (padding allowed after the fine EOS) -> grain [Hc,Wc], codes [Hf,Wf].

    Strict: raises InputError unless the tokens describe a complete map (each region either
    coded coarsely once or covered cell by cell in the fine stream, nothing twice)."""
    content, position, segment = (np.asarray(a).reshape(-1) for a in (content, position, segment))
    r = region_ratio(layout)
    nc, nf = layout.n_coarse, layout.n_fine
    eos_c, eos_f = layout.position_eos(SEGMENT_COARSE), layout.position_eos(SEGMENT_FINE)
    coarse_eos = np.flatnonzero((segment == SEGMENT_COARSE) & (position == eos_c))
    fine_eos = np.flatnonzero((segment == SEGMENT_FINE) & (position == eos_f))
    if len(coarse_eos) == 0 or len(fine_eos) == 0:
        raise InputError("token sequence has no coarse or no fine EOS", "pass complete sequences")
    ce, fe = int(coarse_eos[0]), int(fine_eos[0])
    coarse_pos, coarse_codes = position[1:ce], content[1:ce]
    fine_pos, fine_codes = position[ce + 2 : fe], content[ce + 2 : fe]
    if (segment[:ce] != SEGMENT_COARSE).any() or (segment[ce + 1 : fe] != SEGMENT_FINE).any():
        raise InputError("segment ids do not follow [coarse..., fine...]")
    K = layout.n_codes
    if _outside(coarse_pos, nc) or _outside(fine_pos, nf) or _outside(coarse_codes, K) or _outside(fine_codes, K):
        raise InputError("token sequence holds a special or out-of-range id inside a stream")
    if len(np.unique(coarse_pos)) != len(coarse_pos) or len(np.unique(fine_pos)) != len(fine_pos):
        raise InputError("token sequence repeats a position")
    grain = np.ones(nc, dtype=np.int64)
    grain[coarse_pos] = 0
    grain = grain.reshape(layout.coarse_hw)
    expected_fine = np.flatnonzero(fine_cell_mask(layout, grain).reshape(-1))
    if not np.array_equal(np.sort(fine_pos), expected_fine):
        raise InputError("fine stream does not cover exactly the cells of the fine regions")
    region_codes = np.zeros(nc, dtype=np.int64)
    region_codes[coarse_pos] = coarse_codes
    # coarse codes fill their region's r x r fine cells; fine codes overwrite the fine regions
    codes = np.repeat(np.repeat(region_codes.reshape(layout.coarse_hw), r, axis=0), r, axis=1).reshape(-1)
    codes[fine_pos] = fine_codes
    return grain, codes.reshape(layout.fine_hw)


def pad_sequences(layout: TokenLayout, seqs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> TokenBatch:
    """Right-pad per-sample (content, position, segment) to one TokenBatch."""
    lengths = np.array([len(s[0]) for s in seqs], dtype=np.int64)
    T = int(lengths.max()) if len(seqs) else 0
    B = len(seqs)
    content = np.full((B, T), layout.content_pad, dtype=np.int64)
    position = np.full((B, T), layout.position_pad(SEGMENT_FINE), dtype=np.int64)
    segment = np.full((B, T), SEGMENT_FINE, dtype=np.int64)
    for i, (c, p, s) in enumerate(seqs):
        n = len(c)
        content[i, :n], position[i, :n], segment[i, :n] = c, p, s
    return TokenBatch(content, position, segment, lengths)


def encode_batch(
    layout: TokenLayout, grain: np.ndarray, codes: np.ndarray, classes: np.ndarray | list[int] | None = None
) -> TokenBatch:
    """grain [B,Hc,Wc], codes [B,Hf,Wf] (+ classes [B]) -> right-padded TokenBatch."""
    grain, codes = np.asarray(grain), np.asarray(codes)
    B = grain.shape[0]
    cls = [None] * B if classes is None else [int(c) for c in classes]
    if len(cls) != B:
        raise InputError(f"{len(cls)} classes for {B} samples", "pass one class per sample")
    return pad_sequences(layout, [encode_tokens(layout, grain[i], codes[i], cls[i]) for i in range(B)])


def decode_batch(layout: TokenLayout, tokens: TokenBatch) -> tuple[np.ndarray, np.ndarray]:
    """TokenBatch -> grain int64 [B,Hc,Wc], codes int64 [B,Hf,Wf]."""
    pairs = [decode_tokens(layout, *tokens.sample(i)) for i in range(tokens.batch)]
    grain = np.stack([g for g, _ in pairs]) if pairs else np.zeros((0, *layout.coarse_hw), np.int64)
    codes = np.stack([c for _, c in pairs]) if pairs else np.zeros((0, *layout.fine_hw), np.int64)
    return grain, codes


def class_of_tokens(layout: TokenLayout, content: np.ndarray) -> np.ndarray:
    """Class ids from the start tokens of content [B, T] (class-conditional layouts)."""
    return np.asarray(content)[:, 0] - layout.content_start(0)
