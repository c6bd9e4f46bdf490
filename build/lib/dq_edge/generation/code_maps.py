"""Code maps from token sequences that may be unfinished (previews) or, with the official
sampler, incomplete: the decoder's input for what is known so far."""

from __future__ import annotations

import numpy as np

from dq_edge.sequences import TokenBatch, decode_batch, region_ratio
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout


def known_code_maps(layout: TokenLayout, tokens: TokenBatch) -> tuple[np.ndarray, np.ndarray]:
    """(grain int64 [B,Hc,Wc], codes int64 [B,Hf,Wf]) of whatever the tokens say: a coarse-coded
    region's code fills its cells (grain 0), fine cells take their own code, every other cell
    code 0 (what the official decoder does with cells its sampler never filled); regions not
    coded coarsely count as fine. For a complete sequence this equals `decode_tokens`."""
    B, T = tokens.content.shape
    r = region_ratio(layout)
    known = np.arange(T) < tokens.lengths[:, None]
    seg, pos, content = tokens.segment, tokens.position, tokens.content
    coarse = known & (seg == SEGMENT_COARSE) & (pos < layout.n_coarse)
    fine = known & (seg == SEGMENT_FINE) & (pos < layout.n_fine)
    sample = np.broadcast_to(np.arange(B)[:, None], (B, T))
    region_codes = np.zeros((B, layout.n_coarse), dtype=np.int64)
    region_codes[sample[coarse], pos[coarse]] = content[coarse]
    coded = np.zeros((B, layout.n_coarse), dtype=bool)
    coded[sample[coarse], pos[coarse]] = True
    hc, wc = layout.coarse_hw
    # [B, Hc, Wc] -> [B, Hf, Wf]: each region's code over its r x r cells
    codes = np.repeat(np.repeat(region_codes.reshape(B, hc, wc), r, axis=1), r, axis=2).reshape(B, -1)
    codes[sample[fine], pos[fine]] = content[fine]
    return (~coded).astype(np.int64).reshape(B, hc, wc), codes.reshape(B, *layout.fine_hw)


def final_code_maps(layout: TokenLayout, tokens: TokenBatch, sampler: str = "dq-edge") -> tuple[np.ndarray, np.ndarray]:
    """Code maps of finished sequences: strict for dq-edge's sampler (a sequence that does not
    cover its map is a bug and raises); the official sampler may end the fine stream early, so
    its uncovered cells decode as code 0, as in the official code."""
    if sampler == "official":
        return known_code_maps(layout, tokens)
    return decode_batch(layout, tokens)
