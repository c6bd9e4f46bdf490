from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dq_edge.graph_io import graph_specs, store_rows
from dq_edge.models.kv_steps import ContentStep, PositionStep, Prefill, empty_caches, graph_dims, step_input_names
from dq_edge.models.transformer import build_transformer
from dq_edge.sequences import encode_batch
from dq_edge.tokens import TokenLayout
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)

LAYOUT = TokenLayout(n_codes=12, coarse_hw=(2, 2), fine_hw=(4, 4), n_classes=3, null_class=True)
TOL = 1e-5


@pytest.fixture(scope="module")
def tr():
    return build_transformer("tiny", LAYOUT, seed=0)


def _batch(rng: np.random.Generator, B: int):
    grain = rng.integers(0, 2, (B, *LAYOUT.coarse_hw))
    grain[0] = 0  # all coarse: shortest sequence
    if B > 1:
        grain[1] = 1  # all fine: longest sequence (= max_length)
    codes = rng.integers(0, LAYOUT.n_codes, (B, *LAYOUT.fine_hw))
    tb = encode_batch(LAYOUT, grain, codes, rng.integers(0, LAYOUT.n_start_tokens, B))
    return tuple(torch.from_numpy(a) for a in (tb.content, tb.position, tb.segment))


def _store(caches, presents, step):
    for cache, row in zip(caches, presents):
        cache[:, :, step] = row[:, :, 0]


def _run_cached(tr, content, position, segment, start=0, pcache=None, ccache=None):
    """Step through rows start..T-2 as the runtime does; returns logits [B, T-1-start, V]."""
    B, T = content.shape
    pcache = pcache or empty_caches(tr, "position", B)
    ccache = ccache or empty_caches(tr, "content", B)
    pos_step, con_step = PositionStep(tr), ContentStep(tr)
    pl, cl = [], []
    for t in range(start, T - 1):
        step = torch.full((B,), t)
        p_logits, hidden, *p_kv = pos_step(content[:, t], position[:, t], segment[:, t], step, *pcache)
        _store(pcache, p_kv, t)
        c_logits, *c_kv = con_step(hidden, position[:, t + 1], segment[:, t + 1], step, *ccache)
        _store(ccache, c_kv, t)
        pl.append(p_logits)
        cl.append(c_logits)
    return torch.stack(pl, 1), torch.stack(cl, 1)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 4))
@torch.no_grad()
def test_cached_steps_equal_teacher_forcing(tr, seed, B):
    content, position, segment = _batch(np.random.default_rng(seed), B)
    ref_p, ref_c = tr(content, position, segment)
    got_p, got_c = _run_cached(tr, content, position, segment)
    assert got_p.shape == ref_p.shape and got_c.shape == ref_c.shape
    assert (got_p - ref_p).abs().max() <= TOL
    assert (got_c - ref_c).abs().max() <= TOL


@pytest.mark.parametrize("T0", [2, 4, 7, 11])  # before, at and after the coarse/fine switches
@torch.no_grad()
def test_prefill_then_steps_equal_teacher_forcing(tr, T0):
    content, position, segment = _batch(np.random.default_rng(1), 3)
    ref_p, ref_c = tr(content, position, segment)
    out = Prefill(tr)(content[:, :T0], position[:, :T0], segment[:, :T0])
    p_logits, hidden = out[0], out[1]
    n_p = 2 * tr.config.position_layers
    p_rows, c_rows = out[2 : 2 + n_p], out[2 + n_p :]
    assert p_rows[0].shape[2] == T0 and c_rows[0].shape[2] == T0 - 1
    assert (p_logits - ref_p[:, T0 - 1]).abs().max() <= TOL
    pcache, ccache = empty_caches(tr, "position", 3), empty_caches(tr, "content", 3)
    for cache, rows in zip(pcache, p_rows):
        cache[:, :, :T0] = rows
    for cache, rows in zip(ccache, c_rows):
        cache[:, :, : T0 - 1] = rows
    # continue with the content step of row T0-1, then full steps
    step = torch.full((3,), T0 - 1)
    c_logits, *c_kv = ContentStep(tr)(hidden, position[:, T0], segment[:, T0], step, *ccache)
    _store(ccache, c_kv, T0 - 1)
    assert (c_logits - ref_c[:, T0 - 1]).abs().max() <= TOL
    got_p, got_c = _run_cached(tr, content, position, segment, start=T0, pcache=pcache, ccache=ccache)
    assert (got_p - ref_p[:, T0:]).abs().max() <= TOL
    assert (got_c - ref_c[:, T0:]).abs().max() <= TOL


@torch.no_grad()
def test_garbage_in_unused_cache_rows_is_ignored(tr):
    """Rows >= step must not leak into attention (the runtime never clears them between steps)."""
    content, position, segment = _batch(np.random.default_rng(2), 2)
    pcache = [torch.randn_like(c) * 100 for c in empty_caches(tr, "position", 2)]
    ccache = [torch.randn_like(c) * 100 for c in empty_caches(tr, "content", 2)]
    ref_p, ref_c = tr(content, position, segment)
    got_p, got_c = _run_cached(tr, content, position, segment, pcache=pcache, ccache=ccache)
    assert (got_p - ref_p).abs().max() <= TOL
    assert (got_c - ref_c).abs().max() <= TOL


@torch.no_grad()
def test_step_io_matches_graph_specs(tr):
    dims = graph_dims(tr, image_size=16, z_channels=8, router="entropy")
    specs = graph_specs(dims, "fp32", max_batch=2)
    sizes = {"batch": 2, "tokens": 5, "tokens_minus_1": 4, "cache_rows": dims.max_length}
    content, position, segment = _batch(np.random.default_rng(3), 2)
    inputs = {
        "transformer_position_step": [content[:, 0], position[:, 0], segment[:, 0], torch.zeros(2, dtype=torch.long)]
        + empty_caches(tr, "position", 2),
        "transformer_content_step": [torch.zeros(2, dims.width), position[:, 1], segment[:, 1], torch.zeros(2, dtype=torch.long)]
        + empty_caches(tr, "content", 2),
        "transformer_prefill": [content[:, :5], position[:, :5], segment[:, :5]],
    }
    mods = {"transformer_position_step": PositionStep(tr), "transformer_content_step": ContentStep(tr), "transformer_prefill": Prefill(tr)}
    for name, mod in mods.items():
        spec = specs[name]
        assert step_input_names(tr, name) == [t.name for t in spec.inputs]
        for t, x in zip(spec.inputs, inputs[name]):
            assert tuple(x.shape) == t.shape(sizes), (name, t.name)
        outs = mod(*inputs[name])
        assert len(outs) == len(spec.outputs)
        for t, y in zip(spec.outputs, outs):
            assert tuple(y.shape) == t.shape(sizes), (name, t.name)
            assert str(y.dtype) == f"torch.{t.dtype}"


@torch.no_grad()
def test_rows_at_different_steps_match_their_solo_runs(tr):
    """Continuous batching: sample 1 starts `lag` steps after sample 0 in the same batch (per-row
    `step`, stored with graph_io.store_rows); each sample's logits equal its own batch-1 run."""
    content, position, segment = _batch(np.random.default_rng(4), 2)
    T = content.shape[1]
    lag = 3
    solo = [_run_cached(tr, content[b : b + 1], position[b : b + 1], segment[b : b + 1]) for b in range(2)]
    pcache = [torch.randn_like(c) for c in empty_caches(tr, "position", 2)]  # garbage: a refilled row
    ccache = [torch.randn_like(c) for c in empty_caches(tr, "content", 2)]
    pos_step, con_step = PositionStep(tr), ContentStep(tr)
    for i in range(T - 1):
        t = np.array([i, max(i - lag, 0)])  # sample 1 waits at step 0 for `lag` steps (recomputed)
        idx = torch.from_numpy(t)
        rows = torch.arange(2)
        p_logits, hidden, *p_kv = pos_step(content[rows, idx], position[rows, idx], segment[rows, idx], idx, *pcache)
        for cache, row in zip(pcache, p_kv):
            store_rows(cache, row, t)
        c_logits, *c_kv = con_step(hidden, position[rows, idx + 1], segment[rows, idx + 1], idx, *ccache)
        for cache, row in zip(ccache, c_kv):
            store_rows(cache, row, t)
        for b in range(2):
            assert (p_logits[b] - solo[b][0][0, t[b]]).abs().max() <= TOL
            assert (c_logits[b] - solo[b][1][0, t[b]]).abs().max() <= TOL
