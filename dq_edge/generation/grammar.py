"""The token grammar: which next positions are legal, per sample, during coarse-to-fine
generation (dq-edge's sampler; the official sampler's rules are in dq_edge.generation.official).

The rules follow from what a sequence means (dq_edge.sequences):
- coarse stream: each coarse region may be coded coarsely at most once; the coarse EOS is
  always legal (every region not coded coarsely becomes a fine region), including after the
  last region Nc-1 (the official sampler's off-by-one that forbids it is not copied).
- after the coarse EOS comes the fine start token (forced by the generator, not sampled).
- fine stream: only cells of the fine regions, each once; the fine EOS only once every such
  cell is covered. With `fixed_fine_positions` the only legal cell is the first uncovered one
  in raster order (then EOS), so the fine positions are exactly those of the sequence builder.
- start / class ids and PAD are never legal; EOS only as above.
Content: a grid position takes a code 0..K-1 (PAD, EOS and start/class ids are forbidden); an
EOS position takes the content EOS and a start position the start content (forced).

The legal-position matrix is kept up to date as tokens arrive (one row changes per accepted
token), so asking for it costs nothing and a step allocates only index vectors.
"""

from __future__ import annotations

import numpy as np

from dq_edge.errors import InputError
from dq_edge.sequences import region_ratio
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout

COARSE, FINE_START, FINE, DONE = 0, 1, 2, 3  # phase: what the NEXT token of a sample is
_PREFIX_HINT = "a prefix must be a valid start of a sequence (see dq_edge.sequences)"


class PositionMasks:
    """Per-sample grammar state of `batch` sequences; buffers are allocated once."""

    def __init__(self, layout: TokenLayout, batch: int, position_vocab: int, fixed_fine_positions: bool = False):
        self.layout = layout
        self.fixed = fixed_fine_positions
        self.nc, self.nf = layout.n_coarse, layout.n_fine
        self.coarse_eos = layout.position_eos(SEGMENT_COARSE)
        self.fine_eos = layout.position_eos(SEGMENT_FINE)
        if position_vocab <= self.fine_eos:
            raise InputError(f"position vocab {position_vocab} cannot hold the fine EOS {self.fine_eos}")
        self.vocab = position_vocab
        self.phase = np.full(batch, COARSE, dtype=np.int8)
        self.coarse_used = np.zeros((batch, self.nc), dtype=bool)
        self.fine_todo = np.zeros((batch, self.nf), dtype=bool)  # cells the fine stream still owes
        self.todo_count = np.zeros(batch, dtype=np.int64)
        self._allowed = np.zeros((batch, position_vocab), dtype=bool)
        self.restart(slice(None))
        r = region_ratio(layout)
        # fine cell -> its coarse region (raster indices), to expand a grain map onto the fine grid
        rows, cols = np.divmod(np.arange(self.nf), layout.fine_hw[1])
        self.region_of_cell = (rows // r) * layout.coarse_hw[1] + cols // r

    def restart(self, row: int | slice) -> None:
        """Row(s) `row` start a new sample: the state of a fresh batch (continuous batching)."""
        self.phase[row] = COARSE
        self.coarse_used[row] = False
        self.fine_todo[row] = False
        self.todo_count[row] = 0
        self._allowed[row] = False
        self._allowed[row, : self.nc] = True
        self._allowed[row, self.coarse_eos] = True

    @property
    def done(self) -> np.ndarray:
        return self.phase == DONE

    def next_segment(self) -> np.ndarray:
        """int64 [B]: the segment of every sample's next token (0 coarse stream, 1 fine)."""
        return (self.phase != COARSE).astype(np.int64)  # SEGMENT_COARSE = 0, SEGMENT_FINE = 1

    def allowed_positions(self) -> np.ndarray:
        """bool [B, position_vocab]: legal next positions (rows not sampling a position: none).
        The state's own buffer: read it before the next `advance`."""
        return self._allowed

    def advance(self, position: np.ndarray, active: np.ndarray | None = None) -> None:
        """Record the next token's position of every sample (rows where `active` is False and
        finished rows are skipped). Raises InputError on an illegal position."""
        active = self.phase != DONE if active is None else (active & (self.phase != DONE))
        if len(active) == 1:  # one sample: plain scalars are cheaper than index arrays
            if active[0]:
                self._advance_one(int(np.asarray(position)[0]))
            return
        rows = np.flatnonzero(active)
        if len(rows) == 0:
            return
        pos = np.asarray(position)[rows]
        starting = self.phase[rows] == FINE_START
        for i, p in zip(rows[starting], pos[starting]):
            self._enter_fine(int(i), int(p))
        rows, pos = rows[~starting], pos[~starting]
        legal = (pos >= 0) & (pos < self.vocab)
        legal[legal] = self._allowed[rows[legal], pos[legal]]
        if not legal.all():
            i, p = int(rows[~legal][0]), int(pos[~legal][0])
            stream = "coarse" if self.phase[i] == COARSE else "fine"
            raise InputError(f"sample {i}: position {p} is not legal in the {stream} stream", _PREFIX_HINT)
        self._allowed[rows, pos] = False  # each cell once
        coarse = self.phase[rows] == COARSE
        cells = pos < np.where(coarse, self.nc, self.nf)
        self.coarse_used[rows[coarse & cells], pos[coarse & cells]] = True
        fine_rows, fine_pos = rows[~coarse & cells], pos[~coarse & cells]
        if len(fine_rows):
            self.fine_todo[fine_rows, fine_pos] = False
            self.todo_count[fine_rows] -= 1
            self._open_fine_choices(fine_rows)
        for i in rows[~cells]:  # an EOS: the stream ends
            self._end_stream(int(i))

    def _advance_one(self, pos: int) -> None:
        """`advance` for a batch of one sample (the same rules, row 0)."""
        phase = self.phase[0]
        if phase == FINE_START:
            self._enter_fine(0, pos)
            return
        if not (0 <= pos < self.vocab and self._allowed[0, pos]):
            stream = "coarse" if phase == COARSE else "fine"
            raise InputError(f"sample 0: position {pos} is not legal in the {stream} stream", _PREFIX_HINT)
        self._allowed[0, pos] = False
        if phase == COARSE and pos < self.nc:
            self.coarse_used[0, pos] = True
        elif phase == FINE and pos < self.nf:
            self.fine_todo[0, pos] = False
            self.todo_count[0] -= 1
            if self.todo_count[0] == 0:
                self._allowed[0, self.fine_eos] = True
            elif self.fixed:
                self._allowed[0, int(self.fine_todo[0].argmax())] = True
        else:
            self._end_stream(0)

    def _open_fine_choices(self, rows: np.ndarray) -> None:
        """After a fine cell: the fixed order opens the next cell; a covered row opens the EOS."""
        if self.fixed:
            has = self.todo_count[rows] > 0
            nxt = self.fine_todo[rows[has]].argmax(axis=1)
            self._allowed[rows[has], nxt] = True
        self._allowed[rows[self.todo_count[rows] == 0], self.fine_eos] = True

    def _end_stream(self, i: int) -> None:
        self._allowed[i] = False
        if self.phase[i] == COARSE:
            self.phase[i] = FINE_START
            self.fine_todo[i] = ~self.coarse_used[i][self.region_of_cell]
            self.todo_count[i] = int(self.fine_todo[i].sum())
        else:
            self.phase[i] = DONE

    def _enter_fine(self, i: int, pos: int) -> None:
        if not self.nf + 2 <= pos < self.nf + 2 + self.layout.n_start_tokens:  # a start / class id
            raise InputError(f"sample {i}: expected the fine start token, got position {pos}", _PREFIX_HINT)
        self.phase[i] = FINE
        if self.fixed:
            self._open_fine_choices(np.array([i]))
        else:
            self._allowed[i, : self.nf] = self.fine_todo[i]
            self._allowed[i, self.fine_eos] = self.todo_count[i] == 0


def content_code_mask(layout: TokenLayout, content_vocab: int) -> np.ndarray:
    """bool [content_vocab]: the ids a grid position may take (codes 0..K-1)."""
    m = np.zeros(content_vocab, dtype=bool)
    m[: layout.n_codes] = True
    return m
