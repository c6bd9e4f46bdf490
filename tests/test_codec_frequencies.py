"""Probability quantization and the fixed-length packing, as properties."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dq_edge.codec import fixed_coder
from dq_edge.codec.frequencies import PROB_BITS, categorical, quantize
from dq_edge.tokens import TokenLayout

logit_arrays = hnp.arrays(
    np.float32, st.integers(2, 300),
    elements=st.floats(-1e4, 1e4, width=32) | st.sampled_from([np.inf, -np.inf, np.nan]),
)


@settings(max_examples=300, deadline=None)
@given(logits=logit_arrays, seed=st.integers(0, 2**32 - 1))
def test_frequencies_cover_exactly_the_allowed_ids(logits, seed):
    allowed = np.random.default_rng(seed).random(len(logits)) < 0.6
    allowed[seed % len(logits)] = True
    ids, freqs = quantize(logits, allowed)
    assert np.array_equal(ids, np.flatnonzero(allowed))  # forbidden ids are no symbols at all
    assert freqs.min() >= 1 and int(freqs.sum()) == 1 << PROB_BITS
    again = quantize(logits.copy(), allowed.copy())
    assert np.array_equal(again[1], freqs)


def test_frequencies_follow_the_softmax():
    logits = np.array([0.0, np.log(3.0), -100.0, 5.0], np.float32)
    ids, freqs = quantize(logits, np.array([True, True, True, False]))
    p = freqs / float(1 << PROB_BITS)
    assert abs(p[1] / p[0] - 3.0) < 1e-2 and freqs[2] >= 1 and list(ids) == [0, 1, 2]


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_range_coder_round_trips_quantized_models(seed):
    import constriction

    rng = np.random.default_rng(seed)
    models, symbols = [], []
    encoder = constriction.stream.queue.RangeEncoder()
    for _ in range(20):
        logits = rng.normal(0, 5, rng.integers(2, 600)).astype(np.float32)
        _, freqs = quantize(logits, np.ones(len(logits), bool))
        k = int(rng.integers(len(freqs)))
        encoder.encode(k, categorical(freqs))
        models.append(freqs)
        symbols.append(k)
    decoder = constriction.stream.queue.RangeDecoder(encoder.get_compressed())
    assert [decoder.decode(categorical(f)) for f in models] == symbols


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_classes=st.sampled_from([0, 1, 3, 10]))
def test_fixed_length_packing_round_trips(seed, n_classes):
    layout = TokenLayout(n_codes=64, coarse_hw=(4, 4), fine_hw=(8, 8), n_classes=n_classes)
    rng = np.random.default_rng(seed)
    grain = (rng.random(16) < 0.5).astype(np.int64)
    coarse = np.flatnonzero(grain == 0)
    codes = rng.integers(0, 64, len(coarse) + 4 * int(grain.sum()))
    cls = int(rng.integers(n_classes)) if n_classes else None
    got_cls, got_grain, got_codes = fixed_coder.unpack(layout, fixed_coder.pack(layout, cls, coarse, codes))
    assert got_cls == cls
    assert np.array_equal(got_grain.reshape(-1), grain) and np.array_equal(got_codes, codes)
