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
        self._start: tuple[int, np.ndarray] = (-1, np.zeros(batch, dtype=bool))  # last set_position's start rows

    def column(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token t of every backend row (views)."""
        return self.content[:, t], self.position[:, t], self.segment[:, t]

    def is_start(self, position: np.ndarray, segment: np.ndarray) -> np.ndarray:
        grid = np.where(segment == SEGMENT_COARSE, self.layout.n_coarse, self.layout.n_fine)
        return position >= grid + 2

    def set_position(
        self, t: int, position: np.ndarray, segment: np.ndarray, active: np.ndarray, start: np.ndarray | None = None
    ) -> None:
        """Write position/segment of token t for the active sample rows and their mirrors; a
        start position becomes each row's own start id. `start`: bool [B] of the start tokens
        when the caller knows them (saves recomputing)."""
        start = self.is_start(position, segment) if start is None else start
        self._start = (t, start)
        for half in range(self.halves):
            rows = slice(half * self.B, (half + 1) * self.B)
            if start.any():
                own = np.where(segment == SEGMENT_COARSE, self.start_coarse[rows], self.start_fine[rows])
                value = np.where(start, own, position)
            else:
                value = position
            np.copyto(self.position[rows, t], value, where=active)
            np.copyto(self.segment[rows, t], segment, where=active)

    def set_content(self, t: int, content: np.ndarray, active: np.ndarray) -> None:
        """Write content of token t (after its position); start positions take the start content."""
        known_t, start = self._start
        if known_t != t:
            start = self.is_start(self.position[: self.B, t], self.segment[: self.B, t])
        for half in range(self.halves):
            rows = slice(half * self.B, (half + 1) * self.B)
            value = np.where(start, self.start_content[rows], content) if start.any() else content
            np.copyto(self.content[rows, t], value, where=active)
