"""Which next positions are legal, per sample, during coarse-to-fine generation. Torch-free.

The rules follow from what a sequence means (dq_edge.sequences):
- coarse stream: each coarse region may be coded coarsely at most once; the coarse EOS is
  always legal (every region not coded coarsely becomes a fine region), including after the
  last region Nc-1 (the official sampler's off-by-one that forbids it is not copied).
- after the coarse EOS comes the fine start token (forced by the loop, not sampled).
- fine stream: only cells of the fine regions, each once; the fine EOS only once every such
  cell is covered. With `fixed_fine_positions` the only legal cell is the first uncovered one
  in raster order (then EOS), so the fine positions are exactly those of the sequence builder.
- start / class ids and PAD are never legal; EOS only as above.
Content: a grid position takes a code 0..K-1 (PAD, EOS and start/class ids are forbidden); an
EOS position takes the content EOS and a start position the start content (forced).
"""

from __future__ import annotations

import numpy as np

from dq_edge.errors import InputError
from dq_edge.sequences import region_ratio
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout

COARSE, FINE_START, FINE, DONE = 0, 1, 2, 3  # phase: what the NEXT token of a sample is


class PositionMasks:
    """Per-sample state of `batch` sequences; the allowed mask buffer is allocated once."""

    def __init__(self, layout: TokenLayout, batch: int, position_vocab: int, fixed_fine_positions: bool = False):
        self.layout = layout
        self.fixed = fixed_fine_positions
        self.nc, self.nf = layout.n_coarse, layout.n_fine
        self.coarse_eos = layout.position_eos(SEGMENT_COARSE)
        self.fine_eos = layout.position_eos(SEGMENT_FINE)
        if position_vocab <= self.fine_eos:
            raise InputError(f"position vocab {position_vocab} cannot hold the fine EOS {self.fine_eos}")
        self.phase = np.full(batch, COARSE, dtype=np.int8)
        self.coarse_used = np.zeros((batch, self.nc), dtype=bool)
        self.fine_todo = np.zeros((batch, self.nf), dtype=bool)  # cells the fine stream still owes
        self._allowed = np.zeros((batch, position_vocab), dtype=bool)
        r = region_ratio(layout)
        # fine cell -> its coarse region (raster indices), to expand a grain map onto the fine grid
        hf, wf = layout.fine_hw
        rows, cols = np.divmod(np.arange(self.nf), wf)
        self._region_of_cell = (rows // r) * layout.coarse_hw[1] + cols // r

    @property
    def done(self) -> np.ndarray:
        return self.phase == DONE

    def next_segment(self) -> np.ndarray:
        return np.where(self.phase == COARSE, SEGMENT_COARSE, SEGMENT_FINE).astype(np.int64)

    def allowed_positions(self) -> np.ndarray:
        """bool [B, position_vocab]: legal next positions (rows not sampling a position: none).
        Returns the state's own buffer; valid until the next call."""
        a = self._allowed
        a[:] = False
        coarse = self.phase == COARSE
        a[coarse, : self.nc] = ~self.coarse_used[coarse]
        a[coarse, self.coarse_eos] = True
        fine = self.phase == FINE
        if self.fixed:
            todo = self.fine_todo[fine]
            first = todo.argmax(axis=1)
            rows = np.flatnonzero(fine)
            has = todo.any(axis=1)
            a[rows[has], first[has]] = True
        else:
            a[fine, : self.nf] = self.fine_todo[fine]
        a[fine, self.fine_eos] = ~self.fine_todo[fine].any(axis=1)
        return a

    def advance(self, position: np.ndarray, active: np.ndarray | None = None) -> None:
        """Record the next token's position of every sample (rows where `active` is False and
        finished rows are skipped). Raises InputError on an illegal position."""
        active = ~self.done if active is None else (active & ~self.done)
        for i in np.flatnonzero(active):
            self._advance_one(i, int(position[i]))

    def _advance_one(self, i: int, pos: int) -> None:
        phase = self.phase[i]
        if phase == FINE_START:
            if not self.nf + 2 <= pos < self.nf + 2 + self.layout.n_start_tokens:  # a start / class id
                raise InputError(f"sample {i}: expected the fine start token, got position {pos}")
            self.phase[i] = FINE
            return
        legal = self._legal(i, pos)
        if not legal:
            raise InputError(
                f"sample {i}: position {pos} is not legal in the {'coarse' if phase == COARSE else 'fine'} stream",
                "a prefix must be a valid start of a sequence (see dq_edge.sequences)",
            )
        if phase == COARSE:
            if pos == self.coarse_eos:
                self.phase[i] = FINE_START
                self.fine_todo[i] = ~self.coarse_used[i][self._region_of_cell]
            else:
                self.coarse_used[i, pos] = True
        elif pos == self.fine_eos:
            self.phase[i] = DONE
        else:
            self.fine_todo[i, pos] = False

    def _legal(self, i: int, pos: int) -> bool:
        phase = self.phase[i]
        if phase == COARSE:
            return pos == self.coarse_eos or (0 <= pos < self.nc and not self.coarse_used[i, pos])
        if phase == FINE:
            todo = self.fine_todo[i]
            if pos == self.fine_eos:
                return not todo.any()
            if not (0 <= pos < self.nf and todo[pos]):
                return False
            return not self.fixed or pos == int(todo.argmax())
        return False


def content_code_mask(layout: TokenLayout, content_vocab: int) -> np.ndarray:
    """bool [content_vocab]: the ids a grid position may take (codes 0..K-1)."""
    m = np.zeros(content_vocab, dtype=bool)
    m[: layout.n_codes] = True
    return m
