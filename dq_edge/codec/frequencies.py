"""Logits -> integer symbol frequencies with a fixed total, identical in encoder and decoder.

Only the ids the grammar allows are symbols (forbidden ids get no frequency at all and cannot
be coded); every allowed id gets at least 1. Steps, all in float64 on the host:
1. the allowed logits, shifted so the largest is 0, rounded to a grid of 2**-LOGIT_BITS nats
   (tiny float differences between runs then almost never change anything) and clamped at
   -LOGIT_FLOOR nats (a floor that keeps exp() far from underflow);
2. softmax of the rounded values;
3. f_i = 1 + floor(p_i * (TOTAL - n)); the remainder TOTAL - sum(f) (>= 0) goes to the most
   frequent id (the lowest index among ties).
The result is what `constriction`'s categorical model receives as f / TOTAL (exact dyadic
fractions at the coder's own precision).
"""

from __future__ import annotations

import math

import constriction
import numpy as np

PROB_BITS = 24  # total = 2**24: constriction's default precision for its queue (range) coder
LOGIT_BITS = 8  # logits rounded to multiples of 1/256 nat
LOGIT_FLOOR = 60.0  # nats below the maximum; exp(-60) ~ 1e-26 still gets the minimum frequency


def quantize(logits: np.ndarray, allowed: np.ndarray, prob_bits: int = PROB_BITS) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64 [n], freqs int64 [n]) of the allowed ids; freqs >= 1, sum = 2**prob_bits."""
    ids = np.flatnonzero(allowed)
    n = len(ids)
    total = 1 << prob_bits
    if n == 0 or n > total:
        raise ValueError(f"{n} allowed symbols cannot be coded at {prob_bits} bits")
    x = np.asarray(logits, dtype=np.float64)[ids]
    finite = np.isfinite(x)
    x = np.where(finite, x, x[finite].min() if finite.any() else 0.0)  # nan/inf logits: treated as the worst
    scale = float(1 << LOGIT_BITS)
    q = np.maximum(np.rint((x - x.max()) * scale), -LOGIT_FLOOR * scale)
    p = np.exp(q / scale)
    p /= p.sum()
    freqs = np.floor(p * (total - n)).astype(np.int64) + 1
    freqs[int(np.argmax(freqs))] += total - int(freqs.sum())
    return ids, freqs


def categorical(freqs: np.ndarray, prob_bits: int = PROB_BITS):
    """constriction's categorical model over indices 0..n-1 with probabilities freqs / 2**prob_bits."""
    return constriction.stream.model.Categorical(freqs / float(1 << prob_bits), perfect=False)


def ideal_bits(freqs: np.ndarray, index: int, prob_bits: int = PROB_BITS) -> float:
    """-log2 of the quantized probability of `index` (what an ideal coder would spend)."""
    return prob_bits - math.log2(int(freqs[index]))
