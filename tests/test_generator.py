"""The step-wise Generator: same tokens as the batch path, previews, cancel, misuse."""

from __future__ import annotations

import numpy as np
import pytest

import export_helpers
from dq_edge.errors import InputError
from dq_edge.generation import Generator, SamplingParams, generate_tokens
from dq_edge.generation.grammar import COARSE
from dq_edge.models.torch_backend import TorchBackend
from dq_edge.models.transformer import load_transformer
from dq_edge.models.vae import load_vae
from dq_edge.sequences import decode_batch
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def backend():
    folder = export_helpers.tiny_model_folder()
    return TorchBackend(load_transformer(folder), load_vae(folder), max_batch=6)


def _classes(layout, n):
    return None if layout.n_classes == 0 else [i % layout.n_classes for i in range(n)]


@pytest.mark.parametrize("kw", [dict(seed=3), dict(seed=4, top_k=5, top_p_pos=0.8, temperature=0.7), dict(greedy=True)])
def test_step_wise_equals_batch_path(backend, kw):
    layout, params = backend.layout, SamplingParams(**kw)
    batch = generate_tokens(backend, layout, 3, _classes(layout, 3), params)
    gen = Generator(backend, 3, _classes(layout, 3), params)
    steps = 0
    while not gen.is_done():
        assert gen.step() >= 1
        steps += 1
        if steps % 5 == 0:
            gen.preview()  # decoding in between must not disturb the draws or the caches
    got = gen.sequences()
    for a, b in zip((got.content, got.position, got.segment, got.lengths), (batch.content, batch.position, batch.segment, batch.lengths)):
        np.testing.assert_array_equal(a, b)
    assert steps == int(batch.lengths.max()) - 1 and gen.step() == 0 and gen.finished.all()
    grain, codes = gen.code_maps()
    np.testing.assert_array_equal(codes, decode_batch(layout, batch)[1])  # finished: the exact maps


def _coarse_only_codes(layout, tokens, i):
    """Written out: each coarse-coded region's code over its 2x2 cells, every other cell 0."""
    (hc, wc), (hf, wf) = layout.coarse_hw, layout.fine_hw
    codes = np.zeros((hf, wf), dtype=np.int64)
    c, p, s = tokens.sample(i)
    for content, position, segment in zip(c, p, s):
        if segment == 0 and position < layout.n_coarse:
            r, q = divmod(int(position), wc)
            codes[2 * r : 2 * r + 2, 2 * q : 2 * q + 2] = content
    return codes


def test_preview_after_the_coarse_stream_is_the_coarse_image(backend):
    layout = backend.layout
    gen = Generator(backend, 2, _classes(layout, 2), SamplingParams(seed=1))
    while (gen.masks.phase == COARSE).any():  # until both coarse streams are complete
        gen.step()
    seqs = gen.sequences()
    expected = np.stack([_coarse_only_codes(layout, seqs, i) for i in range(2)])
    if (gen.masks.phase == 1).any():  # a sample whose fine stream has not started: coarse codes only
        i = int(np.flatnonzero(gen.masks.phase == 1)[0])
        np.testing.assert_array_equal(gen.code_maps()[1][i], expected[i])
    preview = gen.preview()
    fine_started = gen.masks.phase != 1
    expected[fine_started] = gen.code_maps()[1][fine_started]  # those already hold fine cells
    np.testing.assert_array_equal(preview, backend.decode(expected))
    assert preview.shape == (2, 3, backend.dims.image_size, backend.dims.image_size)


def test_cancel_and_misuse(backend):
    layout = backend.layout
    gen = Generator(backend, 2, _classes(layout, 2), SamplingParams(seed=0))
    assert gen.sequences().lengths.tolist() == [1, 1]  # the start tokens
    gen.step()
    gen.step()
    with pytest.raises(InputError, match="before the first step"):
        gen.append_prefix(gen.sequences())
    gen.cancel()
    assert gen.is_done() and gen.step() == 0
    assert gen.sequences().lengths.tolist() == [3, 3] and not gen.finished.any()
    with pytest.raises(InputError, match="maximum of 6"):
        Generator(backend, 7, _classes(layout, 7))
