"""The codec's only contact with the generation internals: drive a backend through one token
sequence and hand every coded decision (its logits and its legal ids) to a callback.

The encoder's callback returns the token it already knows (teacher forcing) and writes it to
the range coder; the decoder's callback reads it from the range coder. Both run exactly the
same backend calls in the same order (batch 1, `begin` + one position step and one content
step per token, as the sampling loop does), so both see the same logits.

Everything the codec needs from the loop's world (the backend protocol, the token grammar
masks) is imported here and nowhere else in `dq_edge.codec`: when those modules move, this
is the one file to re-point.

The codec grammar is the sampler's grammar (`PositionMasks`) with two restrictions that hold
for every sequence `dq_edge.sequences.encode_tokens` writes, so they lose nothing:
- fine positions are fixed (raster order over the fine regions' cells): a fine position is
  forced, it costs no bits;
- coarse positions increase (raster order over the coarse regions): ids at or before the last
  coarse position are forbidden.
Forced tokens (fine start, fine positions, EOS content, start content) are not offered to the
callback at all.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from dq_edge.errors import DQEdgeError, InputError
from dq_edge.generation.backend import Backend
from dq_edge.generation.grammar import COARSE, FINE_START, PositionMasks, content_code_mask
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout

__all__ = ["Backend", "Decide", "step_sequence", "POSITION", "CONTENT"]

POSITION, CONTENT = "position", "content"

# decide(kind, index, logits float32 [V], allowed bool [V]) -> the id at sequence `index`
Decide = Callable[[str, int, np.ndarray, np.ndarray], int]


def _one(value: int) -> np.ndarray:
    return np.array([value], dtype=np.int64)


def step_sequence(
    backend: Backend, layout: TokenLayout, cls: int | None, decide: Decide
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's token sequence (content, position, segment int64 [T]) built step by step;
    `decide` picks every token that is not forced. Bounded by the model's longest sequence."""
    if (cls is None) != (layout.n_classes == 0) or (cls is not None and not 0 <= cls < layout.n_classes):
        raise InputError(f"class {cls} does not fit a model with {layout.n_classes} classes", "pass a valid class id")
    nc, nf, eos_content = layout.n_coarse, layout.n_fine, layout.content_eos
    masks = PositionMasks(layout, 1, backend.dims.position_vocab, fixed_fine_positions=True)
    code_mask = content_code_mask(layout, backend.dims.content_vocab)
    content = [layout.content_start(cls)]
    position = [layout.position_start(SEGMENT_COARSE, cls)]
    segment = [SEGMENT_COARSE]
    last_coarse = -1
    backend.begin(1)
    for t in range(layout.max_length - 1):
        p_logits = backend.position_step(_one(content[t]), _one(position[t]), _one(segment[t]), t)[0]
        seg = int(masks.next_segment()[0])
        if masks.phase[0] == FINE_START:
            pos = layout.position_start(SEGMENT_FINE, cls)
        else:
            allowed = masks.allowed_positions()[0].copy()
            if masks.phase[0] == COARSE:
                allowed[: last_coarse + 1] = False  # raster order: only later regions or EOS
            pos = _single(allowed)
            if pos is None:
                pos = decide(POSITION, t + 1, p_logits, allowed)
            if seg == SEGMENT_COARSE and pos < nc:
                last_coarse = pos
        masks.advance(_one(pos))  # raises InputError on an illegal id
        c_logits = backend.content_step(_one(pos), _one(seg), t)[0]
        grid = nc if seg == SEGMENT_COARSE else nf
        if pos < grid:
            code = decide(CONTENT, t + 1, c_logits, code_mask)
        else:  # EOS positions carry the content EOS, start positions the start content
            code = eos_content if pos == grid + 1 else layout.content_start(cls)
        content.append(code)
        position.append(pos)
        segment.append(seg)
        if masks.done[0]:
            return tuple(np.asarray(a, dtype=np.int64) for a in (content, position, segment))  # type: ignore[return-value]
    raise DQEdgeError(f"token stepping ran past the longest legal sequence ({layout.max_length})", "report this as a bug")


def _single(allowed: np.ndarray) -> int | None:
    """The one legal id when exactly one is legal (a forced token), else None."""
    ids = np.flatnonzero(allowed)
    if len(ids) == 0:
        raise DQEdgeError("no legal next position", "report this as a bug")
    return int(ids[0]) if len(ids) == 1 else None
