"""Token arrays of all backend rows during a generation: cond rows first, then (guided) the
null-class mirror rows, which receive the same tokens except for their own start ids."""

from __future__ import annotations

import numpy as np

from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout


class RowTokens:
    """content / position / segment int64 [rows, L], allocated once; column 0 holds each row's
    start token (content, coarse position, segment 0)."""

    def __init__(self, layout: TokenLayout, batch: int, row_classes: np.ndarray | None, guided: bool, length: int | None = None):
        self.layout, self.B, self.guided = layout, batch, guided
        self.halves = 2 if guided else 1
        rows = batch * self.halves
        L = length or layout.max_length
        self.content = np.full((rows, L), layout.content_pad, dtype=np.int64)
        self.position = np.full((rows, L), layout.position_pad(SEGMENT_FINE), dtype=np.int64)
        self.segment = np.full((rows, L), SEGMENT_FINE, dtype=np.int64)
        offset = np.zeros(rows, dtype=np.int64) if row_classes is None else row_classes
        # start ids of every row: content, coarse position, fine position
        self.start_content = layout.content_start(0) + offset
        self.start_coarse = layout.position_start(SEGMENT_COARSE, 0) + offset
        self.start_fine = layout.position_start(SEGMENT_FINE, 0) + offset
        self.content[:, 0] = self.start_content
        self.position[:, 0] = self.start_coarse
        self.segment[:, 0] = SEGMENT_COARSE
        self._start: tuple = (-1, np.zeros(batch, dtype=bool))  # (t, start rows) of the last set_position

    def column(self, t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token t of every backend row: views for an int t; for per-sample t int64 [B] (rows at
        different steps), each row's own token (copies; mirror rows follow their sample)."""
        if np.ndim(t) == 0:
            return self.content[:, t], self.position[:, t], self.segment[:, t]
        index = self._cells(t)
        return self.content[index], self.position[index], self.segment[index]

    def backend_steps(self, t) -> np.ndarray | int:
        """The backend's `step` argument for sample indices t: an int, or int64 [rows]."""
        return t if np.ndim(t) == 0 else np.tile(np.asarray(t, np.int64), self.halves)

    def _cells(self, t) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) index arrays of token t[b] of every backend row."""
        rows = self.content.shape[0]
        return np.arange(rows), np.tile(np.broadcast_to(np.asarray(t, np.int64), (self.B,)), self.halves)

    def restart(self, sample: int, cls: int | None) -> None:
        """Clear a sample's row (and its mirror) for a new image of class `cls` (continuous
        batching): PAD everywhere, its class's start token in column 0."""
        offset = 0 if cls is None else cls
        null = None if not self.guided else int(self.start_content[self.B] - self.layout.content_start(0))
        for half in range(self.halves):
            r = half * self.B + sample
            own = offset if half == 0 else null
            self.start_content[r] = self.layout.content_start(0) + own
            self.start_coarse[r] = self.layout.position_start(SEGMENT_COARSE, 0) + own
            self.start_fine[r] = self.layout.position_start(SEGMENT_FINE, 0) + own
            self.content[r] = self.layout.content_pad
            self.position[r] = self.layout.position_pad(SEGMENT_FINE)
            self.segment[r] = SEGMENT_FINE
            self.content[r, 0], self.position[r, 0], self.segment[r, 0] = self.start_content[r], self.start_coarse[r], SEGMENT_COARSE

    def is_start(self, position: np.ndarray, segment: np.ndarray) -> np.ndarray:
        grid = np.where(segment == SEGMENT_COARSE, self.layout.n_coarse, self.layout.n_fine)
        return position >= grid + 2

    def set_position(
        self, t, position: np.ndarray, segment: np.ndarray, active: np.ndarray, start: np.ndarray | None = None
    ) -> None:
        """Write position/segment of token t (int, or int64 [B] per sample) for the active sample
        rows and their mirrors; a start position becomes each row's own start id. `start`: bool
        [B] of the start tokens when the caller knows them (saves recomputing)."""
        start = self.is_start(position, segment) if start is None else start
        self._start = (t, start)
        for half in range(self.halves):
            rows = slice(half * self.B, (half + 1) * self.B)
            if start.any():
                own = np.where(segment == SEGMENT_COARSE, self.start_coarse[rows], self.start_fine[rows])
                value = np.where(start, own, position)
            else:
                value = position
            self._write(self.position, half, t, value, active)
            self._write(self.segment, half, t, segment, active)

    def set_content(self, t, content: np.ndarray, active: np.ndarray) -> None:
        """Write content of token t (after its position); start positions take the start content."""
        known_t, start = self._start
        same = known_t is t or (np.ndim(t) == 0 and np.ndim(known_t) == 0 and known_t == t)
        if not same:
            start = self.is_start(self._read(self.position, 0, t), self._read(self.segment, 0, t))
        for half in range(self.halves):
            rows = slice(half * self.B, (half + 1) * self.B)
            value = np.where(start, self.start_content[rows], content) if start.any() else content
            self._write(self.content, half, t, value, active)

    def _read(self, table: np.ndarray, half: int, t) -> np.ndarray:
        rows = np.arange(half * self.B, (half + 1) * self.B)
        return table[rows, t] if np.ndim(t) else table[rows[0] : rows[-1] + 1, t]

    def _write(self, table: np.ndarray, half: int, t, value: np.ndarray, active: np.ndarray) -> None:
        """table[row, t] = value for the active samples of one half (t: int or int64 [B])."""
        if np.ndim(t) == 0:
            np.copyto(table[half * self.B : (half + 1) * self.B, t], value, where=active)
            return
        rows = np.arange(half * self.B, (half + 1) * self.B)[active]
        table[rows, np.asarray(t)[active]] = np.broadcast_to(value, active.shape)[active]
