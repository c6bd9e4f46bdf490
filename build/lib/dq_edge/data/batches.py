"""Deterministic, resumable batch order over an ImageSet (numpy only).

The order of epoch e is a permutation drawn from PCG64(seed, e), so the whole data order is a
function of (seed, epoch, cursor): that triple is the data-order state a checkpoint stores.
Under DDP every rank walks the same permutation and takes its own slice of each global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dq_edge.data.imageset import ImageSet
from dq_edge.errors import InputError


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 [B, H, W, C] -> float32 [B, 3, H, W] in [-1, 1]; grayscale is repeated to RGB."""
    x = images.astype(np.float32) / 127.5 - 1.0
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # [B, 3, H, W]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3] (clamped)."""
    y = np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return y.transpose(0, 2, 3, 1)  # [B, H, W, 3]


@dataclass
class Batch:
    images: np.ndarray  # float32 [B, 3, H, W] in [-1, 1]
    labels: np.ndarray | None  # int64 [B]
    indices: np.ndarray  # int64 [B] into the ImageSet


class BatchOrder:
    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        global_batch = batch_size * world_size
        if n < global_batch:
            raise InputError(
                f"dataset has {n} images, fewer than one global batch ({batch_size} x {world_size} processes)",
                "use a smaller --batch or more data",
            )
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n, batch_size, seed, rank, world_size
        self.epoch = 0
        self.cursor = 0  # index of the next global batch within the epoch
        self._perm_epoch = -1
        self._perm = np.empty(0, np.int64)

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world_size)  # drop the ragged tail: equal batches on every rank

    def _permutation(self) -> np.ndarray:
        if self._perm_epoch != self.epoch:
            self._perm = np.random.Generator(np.random.PCG64([self.seed, self.epoch])).permutation(self.n)
            self._perm_epoch = self.epoch
        return self._perm

    def next_indices(self) -> np.ndarray:
        if self.cursor >= self.batches_per_epoch:
            self.epoch += 1
            self.cursor = 0
        gb = self.batch_size * self.world_size
        start = self.cursor * gb + self.rank * self.batch_size
        self.cursor += 1
        return self._permutation()[start : start + self.batch_size]

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "cursor": self.cursor, "n": self.n, "batch_size": self.batch_size, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "n", "batch_size", "world_size"):
            if state[key] != getattr(self, key):
                raise InputError(
                    f"checkpoint data order has {key}={state[key]}, this run has {getattr(self, key)}",
                    "resume with the same dataset, --batch, --seed and number of processes",
                )
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


def take(s: ImageSet, idx: np.ndarray) -> Batch:
    return Batch(to_float(s.images[idx]), None if s.labels is None else s.labels[idx], idx)


def iterate_in_order(s: ImageSet, batch_size: int):
    """Every image once, in order, last batch ragged (evaluation, token caching)."""
    for start in range(0, len(s), batch_size):
        idx = np.arange(start, min(start + batch_size, len(s)))
        yield take(s, idx)
