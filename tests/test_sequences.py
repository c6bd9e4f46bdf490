from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dq_edge.errors import InputError
from dq_edge.sequences import decode_batch, decode_tokens, encode_batch, encode_tokens
from dq_edge.tokens import TokenLayout

UNCOND = TokenLayout(n_codes=16, coarse_hw=(2, 3), fine_hw=(4, 6))
CLASS = TokenLayout(n_codes=16, coarse_hw=(2, 2), fine_hw=(4, 4), n_classes=5, null_class=True)


def _consistent_codes(layout: TokenLayout, grain: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """A code map as the DGC produces it: coarse regions hold one code repeated over 2x2 cells."""
    region = np.repeat(np.repeat(codes[::2, ::2], 2, 0), 2, 1)
    fine = np.repeat(np.repeat(grain == 1, 2, 0), 2, 1)
    return np.where(fine, codes, region)


@st.composite
def maps(draw, layout: TokenLayout):
    grain = np.array(draw(st.lists(st.integers(0, 1), min_size=layout.n_coarse, max_size=layout.n_coarse)))
    grain = grain.reshape(layout.coarse_hw)
    codes = np.array(
        draw(st.lists(st.integers(0, layout.n_codes - 1), min_size=layout.n_fine, max_size=layout.n_fine))
    ).reshape(layout.fine_hw)
    return grain, _consistent_codes(layout, grain, codes)


@settings(max_examples=60, deadline=None)
@given(maps(UNCOND))
def test_round_trip_uncond(m):
    grain, codes = m
    c, p, s = encode_tokens(UNCOND, grain, codes)
    n_fine_regions = int(grain.sum())
    assert len(c) == (UNCOND.n_coarse - n_fine_regions) + 2 + 4 * n_fine_regions + 2
    assert c[0] == UNCOND.content_start() and p[0] == UNCOND.position_start(0)
    g2, c2 = decode_tokens(UNCOND, c, p, s)
    np.testing.assert_array_equal(g2, grain)
    np.testing.assert_array_equal(c2, codes)


@settings(max_examples=30, deadline=None)
@given(st.lists(maps(CLASS), min_size=1, max_size=4), st.data())
def test_round_trip_batch_with_classes(ms, data):
    grain = np.stack([g for g, _ in ms])
    codes = np.stack([c for _, c in ms])
    classes = [data.draw(st.integers(0, CLASS.n_classes - 1)) for _ in ms]
    tb = encode_batch(CLASS, grain, codes, classes)
    assert tb.content.shape[1] == tb.lengths.max()
    for i, cls in enumerate(classes):
        n = tb.lengths[i]
        assert (tb.content[i, n:] == CLASS.content_pad).all()
        assert (tb.position[i, n:] == CLASS.position_pad(1)).all()
        # class token starts both streams
        starts = np.flatnonzero(tb.content[i, :n] == CLASS.content_start(cls))
        assert len(starts) == 2
        assert tb.position[i, starts[1]] == CLASS.position_start(1, cls)
    g2, c2 = decode_batch(CLASS, tb)
    np.testing.assert_array_equal(g2, grain)
    np.testing.assert_array_equal(c2, codes)


def test_fine_stream_is_raster_order_over_fine_grid():
    grain = np.array([[1, 0, 1], [0, 0, 0]])
    codes = np.arange(24).reshape(4, 6) % 16
    c, p, s = encode_tokens(UNCOND, grain, codes)
    ce = int(np.flatnonzero(p == UNCOND.position_eos(0))[0])
    fine = p[ce + 2 : -1]
    assert fine.tolist() == [0, 1, 4, 5, 6, 7, 10, 11]
    assert p[1:ce].tolist() == [1, 3, 4, 5]
    assert (s[: ce + 1] == 0).all() and (s[ce + 1 :] == 1).all()


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda c, p, s: (c[:-1], p[:-1], s[:-1]), "EOS"),
        (lambda c, p, s: (c, np.where(np.arange(len(p)) == len(p) - 2, p[-3], p), s), "repeats"),
        (lambda c, p, s: (np.delete(c, -2), np.delete(p, -2), np.delete(s, -2)), "cover"),
    ],
)
def test_decode_rejects_incomplete_or_invalid(mutate, msg):
    grain = np.array([[1, 0, 1], [0, 0, 0]])
    codes = _consistent_codes(UNCOND, grain, np.zeros((4, 6), dtype=np.int64))
    c, p, s = mutate(*encode_tokens(UNCOND, grain, codes))
    with pytest.raises(InputError, match=msg):
        decode_tokens(UNCOND, c, p, s)


def test_class_checks():
    g = np.zeros((2, 2), dtype=np.int64)
    codes = np.zeros((4, 4), dtype=np.int64)
    with pytest.raises(InputError, match="out of range"):
        encode_tokens(CLASS, g, codes, cls=CLASS.n_start_tokens)
    with pytest.raises(InputError, match="class-conditional"):
        encode_tokens(CLASS, g, codes)
