"""Classifier-free guidance: the batch runs twice, once with each sample's class and once with
the model's null class (rows B..2B-1 mirror rows 0..B-1); their logits are mixed before sampling.

The mix is float64, so a large scale (1e39) cannot overflow float32 into inf - inf = NaN.
"""

from __future__ import annotations

import numpy as np


def guided_rows(batch: int, guided: bool) -> int:
    """Backend rows a batch needs: guidance doubles them."""
    return batch * (2 if guided else 1)


def row_classes(classes: np.ndarray | None, null_class: int | None, guided: bool) -> np.ndarray | None:
    """Class of every backend row: the samples' classes, then (guided) the null class per sample."""
    if classes is None or not guided:
        return classes
    return np.concatenate([classes, np.full(len(classes), null_class, dtype=np.int64)])


def mix_guidance(cond: np.ndarray, uncond: np.ndarray, scale: float) -> np.ndarray:
    """uncond + scale * (cond - uncond) in float64 (scale 1 = cond)."""
    uncond = uncond.astype(np.float64)
    return uncond + scale * (cond - uncond)


def guide(logits: np.ndarray, batch: int, scale: float | None) -> np.ndarray:
    """The logits to sample from: the rows themselves, or the guided mix of both halves."""
    return logits if scale is None else mix_guidance(logits[:batch], logits[batch:], scale)
