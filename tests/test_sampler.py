"""Sampling, masks and the shared loop (numpy fake backend + the torch reference backend)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dq_edge.errors import InputError
from dq_edge.models import generate  # the public API (a callable module)
from dq_edge.models.kv_steps import transformer_dims
from dq_edge.models.torch_backend import TorchBackend
from dq_edge.models.transformer import build_transformer
from dq_edge.generation import SamplingParams, generate_tokens
from dq_edge.generation.grammar import PositionMasks
from dq_edge.generation.sampling import filtered_probs, make_rng, sample_ids
from dq_edge.sequences import decode_batch, decode_tokens, encode_tokens, pad_sequences
from dq_edge.tokens import TokenLayout
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)

UNCOND = TokenLayout(n_codes=8, coarse_hw=(2, 2), fine_hw=(4, 4))
CLASS = TokenLayout(n_codes=8, coarse_hw=(2, 2), fine_hw=(4, 4), n_classes=3, null_class=True)


# -- sampling ---------------------------------------------------------------------------------
def test_top_k_top_p_and_mask():
    logits = np.log(np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]]))
    allowed = np.ones((2, 4), dtype=bool)
    p = filtered_probs(logits, allowed, 1.0, top_k=2, top_p=None)
    np.testing.assert_allclose(p, [[4 / 7, 3 / 7, 0, 0], [0, 0, 3 / 7, 4 / 7]])
    p = filtered_probs(logits, allowed, 1.0, top_k=None, top_p=0.65)  # 0.4 < 0.65 <= 0.7
    np.testing.assert_allclose(p, [[4 / 7, 3 / 7, 0, 0], [0, 0, 3 / 7, 4 / 7]])
    allowed[0, 0] = False
    p = filtered_probs(logits, allowed, 1.0, top_k=1, top_p=None)
    np.testing.assert_allclose(p[0], [0, 1, 0, 0])
    # temperature -> 0 approaches greedy; a huge temperature flattens
    p = filtered_probs(logits, np.ones((2, 4), bool), 100.0, None, None)
    assert p.max() - p.min() < 0.01


def test_draw_frequencies_and_seed():
    logits = np.tile(np.log(np.array([[0.5, 0.3, 0.2, 1e-12]])), (20000, 1))
    allowed = np.array([True, True, True, False])
    ids = sample_ids(logits, allowed, make_rng(0))
    freq = np.bincount(ids, minlength=4) / len(ids)
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.2, 0.0], atol=0.015)
    np.testing.assert_array_equal(ids, sample_ids(logits, allowed, make_rng(0)))
    assert not np.array_equal(ids, sample_ids(logits, allowed, make_rng(1)))
    assert (sample_ids(logits, allowed, make_rng(0), greedy=True) == 0).all()


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(top_k=0), "top-k"),
        (dict(top_k_pos=1.5), "top-k-pos"),
        (dict(top_p=0.0), "top-p"),
        (dict(top_p_pos=1.2), "top-p-pos"),
        (dict(temperature=0.0), "temperature"),
        (dict(cfg_scale=float("nan")), "cfg-scale"),
    ],
)
def test_impossible_params(kw, msg):
    with pytest.raises(InputError, match=msg):
        SamplingParams(**kw).validate()


# -- masks --------------------------------------------------------------------------------------
def _random_walk(layout, rng, fixed=False):
    """Follow the masks with uniformly random legal choices; returns the token sequence."""
    m = PositionMasks(layout, 1, layout.position_vocab(1), fixed)
    content, position, segment = [layout.content_start()], [layout.position_start(0)], [0]
    while not m.done[0]:
        seg = int(m.next_segment()[0])
        if m.phase[0] == 1:
            pos = layout.position_start(1)
        else:
            choices = np.flatnonzero(m.allowed_positions()[0])
            assert len(choices) > 0
            pos = int(rng.choice(choices))
        m.advance(np.array([pos]))
        position.append(pos)
        segment.append(seg)
        grid = layout.grid_size(seg)
        content.append(int(rng.integers(layout.n_codes)) if pos < grid else (layout.content_eos if pos == grid + 1 else layout.content_start()))
    return np.array(content), np.array(position), np.array(segment)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_every_mask_walk_decodes(seed, fixed):
    c, p, s = _random_walk(UNCOND, np.random.default_rng(seed), fixed)
    grain, codes = decode_tokens(UNCOND, c, p, s)  # raises unless complete
    assert len(c) <= UNCOND.max_length
    if fixed:
        ce = int(np.flatnonzero(p == UNCOND.position_eos(0))[0])
        fine = p[ce + 2 : -1]
        assert (np.diff(fine) > 0).all()


def test_mask_rules():
    L = UNCOND
    m = PositionMasks(L, 2, L.position_vocab(1))
    a = m.allowed_positions()
    assert a[:, : L.n_coarse].all() and a[:, L.position_eos(0)].all()
    assert a[:, L.n_coarse - 1].all()  # the last coarse region is allowed (no off-by-one)
    assert not a[:, [L.position_pad(0), L.position_start(0)]].any()
    m.advance(np.array([3, L.position_eos(0)]))
    a = m.allowed_positions()
    assert not a[0, 3] and a[0, :3].all()
    assert not a[1].any()  # fine start is forced, not sampled
    with pytest.raises(InputError, match="fine start"):
        m.advance(np.array([0, 5]), np.array([False, True]))
    m.advance(np.array([0, L.position_start(1)]), np.array([False, True]))
    a = m.allowed_positions()
    assert a[1, : L.n_fine].all() and not a[1, L.position_eos(1)]  # EOS illegal until covered
    with pytest.raises(InputError, match="not legal"):
        m.advance(np.array([3, 3]))  # coarse 3 again


# -- loop on a fake backend ------------------------------------------------------------------------
class FakeBackend:
    """Random but deterministic logits; records the rows it was called with."""

    name, precision = "fake", "fp32"

    def __init__(self, layout, max_batch=8):
        from types import SimpleNamespace

        self.layout, self.max_batch = layout, max_batch
        self.dims = SimpleNamespace(position_vocab=layout.position_vocab(1), content_vocab=layout.content_vocab)
        self.calls = []

    def begin(self, batch):
        self.batch = batch

    def _logits(self, v, *keys):
        flat = np.concatenate([np.ravel(k) for k in keys])  # `step` may be per row [B]
        rng = np.random.default_rng(abs(hash(tuple(int(k) for k in flat))) % 2**32)
        return rng.normal(size=(self.batch, v)).astype(np.float32) * 3

    def position_step(self, content, position, segment, step):
        assert content.shape == (self.batch,)
        self.calls.append(("p", step))
        return self._logits(self.dims.position_vocab, step, *content, *position)

    def content_step(self, next_position, next_segment, step):
        self.calls.append(("c", step))
        return self._logits(self.dims.content_vocab, step, 7, *next_position)

    def prefill(self, content, position, segment):
        self.calls.append(("prefill", content.shape[1]))
        return self._logits(self.dims.position_vocab, content.shape[1], 9)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.booleans(), st.sampled_from([None, 1.0, 3.0]))
def test_loop_sequences_always_decode(seed, B, fixed, cfg):
    be = FakeBackend(CLASS)
    classes = list(np.random.default_rng(seed).integers(0, 3, B))
    params = SamplingParams(seed=seed, cfg_scale=cfg, fixed_fine_positions=fixed, top_k=3, top_p_pos=0.9)
    tb = generate_tokens(be, CLASS, B, classes, params)
    assert be.batch == B * (1 if cfg is None else 2)
    grain, codes = decode_batch(CLASS, tb)
    for i in range(B):
        c, p, s = encode_tokens(CLASS, grain[i], codes[i], classes[i])
        got = tb.sample(i)
        # the same tokens as the canonical (raster) encoding, up to the order inside each stream
        assert sorted(zip(*got)) == sorted(zip(c, p, s))
        np.testing.assert_array_equal(got[2], s)
        if fixed:
            ce = int(np.flatnonzero(p == CLASS.position_eos(0))[0])
            np.testing.assert_array_equal(got[1][ce + 1 :], p[ce + 1 :])
    again = generate_tokens(FakeBackend(CLASS), CLASS, B, classes, params)
    np.testing.assert_array_equal(again.content, tb.content)


def test_loop_errors():
    be = FakeBackend(CLASS, max_batch=4)
    with pytest.raises(InputError, match="out of range"):
        generate_tokens(be, CLASS, 1, [3])
    with pytest.raises(InputError, match="class-conditional"):
        generate_tokens(be, CLASS, 1, None)
    with pytest.raises(InputError, match="maximum of 4"):
        generate_tokens(be, CLASS, 3, [0, 1, 2], SamplingParams(cfg_scale=2.0))
    with pytest.raises(InputError, match="null class"):
        generate_tokens(FakeBackend(UNCOND), UNCOND, 1, None, SamplingParams(cfg_scale=2.0))
    with pytest.raises(InputError, match="unconditional"):
        generate_tokens(FakeBackend(UNCOND), UNCOND, 1, [0])


# -- torch reference backend ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tr_class():
    return build_transformer("tiny", CLASS, seed=0)


def test_generate_torch_same_seed_same_tokens(tr_class):
    a = generate(tr_class, 3, classes=[0, 1, 2], seed=5, top_k=4)
    b = generate(tr_class, 3, classes=[0, 1, 2], seed=5, top_k=4)
    c = generate(tr_class, 3, classes=[0, 1, 2], seed=6, top_k=4)
    assert torch.equal(a.content, b.content) and torch.equal(a.position, b.position)
    assert not torch.equal(a.content, c.content) or not torch.equal(a.position, c.position)
    assert a.grain.shape == (3, 2, 2) and a.codes.shape == (3, 4, 4)
    assert (a.content[:, 0] == torch.tensor([CLASS.content_start(c) for c in range(3)])).all()
    g = generate(tr_class, 2, classes=1, cfg_scale=2.0, greedy=True)
    assert g.lengths.min() >= 8


def test_prefix_continues_greedy_generation_exactly(tr_class):
    """Greedy generation is a fixed point: feeding its own first k tokens as a prefix (prefill +
    forced steps for longer prefixes) must reproduce the same sequences."""
    full = generate(tr_class, 3, classes=[2, 0, 1], greedy=True)
    seqs = [full.tokens.sample(i) for i in range(3)]
    keep = [3, 5, int(full.lengths[2]) - 1]  # different lengths: prefill to 3, then forced tokens
    prefix = pad_sequences(CLASS, [tuple(a[:k] for a in s) for s, k in zip(seqs, keep)])
    be = TorchBackend(tr_class, max_batch=3)
    again = generate_tokens(be, CLASS, 3, [2, 0, 1], SamplingParams(greedy=True), prefix=prefix)
    np.testing.assert_array_equal(again.content, full.tokens.content)
    np.testing.assert_array_equal(again.position, full.tokens.position)
    assert be.stage_times()["prefill"].count == 1
    bad = pad_sequences(CLASS, [tuple(a[:4] for a in seqs[0])] * 3)
    with pytest.raises(InputError, match="start token"):
        generate_tokens(be, CLASS, 3, [1, 1, 1], SamplingParams(), prefix=bad)
    wrong_seg = pad_sequences(CLASS, [(a[:4], b[:4], np.where(np.arange(4) == 2, 1, c[:4])) for a, b, c in seqs])
    with pytest.raises(InputError, match="segment"):
        generate_tokens(be, CLASS, 3, [2, 0, 1], SamplingParams(), prefix=wrong_seg)


def test_torch_backend_dims(tr_class):
    be = TorchBackend(tr_class, max_batch=2)
    assert {k: getattr(be.dims, k) for k in transformer_dims(tr_class)} == transformer_dims(tr_class)
    with pytest.raises(InputError, match="no VAE"):
        be.decode(np.zeros((1, 4, 4), np.int64))


@torch.no_grad()
def test_greedy_generation_follows_teacher_forced_argmax(tr_class):
    """The loop + KV backend pick, at every step, the best allowed id of the plain model's
    teacher-forced logits (no off-by-one in steps, cache rows or masks)."""
    out = generate(tr_class, 3, classes=[0, 1, 2], greedy=True)
    pl, cl = tr_class(out.content, out.position, out.segment)
    for b in range(3):
        n = int(out.lengths[b])
        masks = PositionMasks(CLASS, 1, CLASS.position_vocab(1))
        for t in range(n - 1):
            pos, seg = int(out.position[b, t + 1]), int(out.segment[b, t + 1])
            if masks.phase[0] != 1:  # not the forced fine start
                allowed = torch.from_numpy(masks.allowed_positions()[0].copy())
                assert pos == int(torch.where(allowed, pl[b, t], -torch.inf).argmax())
            if pos < CLASS.grid_size(seg):
                assert int(out.content[b, t + 1]) == int(cl[b, t, : CLASS.n_codes].argmax())
            masks.advance(np.array([pos]))
        assert masks.done[0]


# -- the buffered sampler is the straightforward math, bit for bit ---------------------------------
def _plain_probs(logits, allowed, temperature, top_k, top_p):
    """The sampling math written plainly (fresh arrays each call): the oracle for TokenSampler."""
    x = np.where(allowed, logits.astype(np.float64) / temperature, -np.inf)
    if top_k is not None and top_k < x.shape[1]:
        kth = -np.partition(-x, top_k - 1, axis=1)[:, top_k - 1 : top_k]
        x = np.where(x >= kth, x, -np.inf)
    peak = x.max(axis=1, keepdims=True)
    p = np.exp(x - np.where(np.isfinite(peak), peak, 0.0))
    total = p.sum(axis=1, keepdims=True)
    p = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=1)
        keep = np.zeros(p.shape, dtype=bool)
        np.put_along_axis(keep, order, np.cumsum(sorted_p, axis=1) - sorted_p < top_p, axis=1)
        p = np.where(keep, p, 0.0)
        total = p.sum(axis=1, keepdims=True)
        p = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    return p


def _plain_draw(p, rng, greedy):
    u = 1.0 - rng.random(p.shape[0])
    if greedy:
        return p.argmax(axis=1)
    cdf = np.cumsum(p, axis=1)
    return np.minimum((cdf < u[:, None] * cdf[:, -1:]).sum(axis=1), p.shape[1] - 1)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**31 - 1), st.integers(1, 8), st.sampled_from([0.3, 1.0, 2.5]),
    st.sampled_from([None, 1, 5, 40]), st.sampled_from([None, 0.5, 0.95]), st.booleans(),
)
def test_buffered_sampler_is_the_plain_math_exactly(seed, B, temperature, top_k, top_p, greedy):
    from dq_edge.generation.sampling import TokenSampler

    rng = np.random.default_rng(seed)
    V = 37
    sampler = TokenSampler(8, V, temperature, top_k, top_p, greedy)
    for _ in range(3):  # reuse of the buffers across calls and batch sizes
        logits = (rng.normal(size=(B, V)) * 4).astype(np.float32)
        allowed = rng.random((B, V)) < 0.6
        allowed[:, 0] = True
        want = _plain_probs(logits, allowed, temperature, top_k, top_p)
        np.testing.assert_array_equal(sampler.probs(logits, allowed), want)
        ids = sampler(logits, allowed, make_rng(seed))
        np.testing.assert_array_equal(ids, _plain_draw(want, make_rng(seed), greedy))


# -- extreme but legal values: stable math, not a misleading grammar error ---------------------------
def test_tiny_temperature_is_greedy_and_huge_guidance_is_finite():
    be = FakeBackend(CLASS)
    greedy = generate_tokens(be, CLASS, 3, [0, 1, 2], SamplingParams(greedy=True, seed=4))
    tiny = generate_tokens(FakeBackend(CLASS), CLASS, 3, [0, 1, 2], SamplingParams(temperature=1e-310, seed=4))
    np.testing.assert_array_equal(tiny.position, greedy.position)
    np.testing.assert_array_equal(tiny.content, greedy.content)
    for scale in (1e39, 1e300):  # float32 would overflow to inf - inf = NaN
        tb = generate_tokens(FakeBackend(CLASS), CLASS, 2, [0, 1], SamplingParams(cfg_scale=scale, seed=1))
        decode_batch(CLASS, tb)  # complete, legal sequences
    p = filtered_probs(np.array([[1.0, 3.0, 3.0, -2.0]], np.float32), np.ones((1, 4), bool), 1e-310, None, None)
    np.testing.assert_array_equal(p, [[0, 0.5, 0.5, 0]])  # the limit: ties share the mass


def test_nan_logits_are_reported_as_such():
    from dq_edge.errors import DQEdgeError

    logits = np.array([[0.0, np.nan, 1.0]], np.float32)
    with pytest.raises(DQEdgeError, match="NaN logits"):
        sample_ids(logits, np.ones(3, bool), make_rng(0))


def _plain_allowed(m):
    """The legal positions recomputed from the grammar state alone (no incremental updates)."""
    a = np.zeros((len(m.phase), m.vocab), dtype=bool)
    coarse, fine = m.phase == 0, m.phase == 2
    a[coarse, : m.nc] = ~m.coarse_used[coarse]
    a[coarse, m.coarse_eos] = True
    if m.fixed:
        for i in np.flatnonzero(fine):
            if m.fine_todo[i].any():
                a[i, int(m.fine_todo[i].argmax())] = True
    else:
        a[fine, : m.nf] = m.fine_todo[fine]
    a[fine, m.fine_eos] = ~m.fine_todo[fine].any(axis=1)
    return a


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.booleans())
def test_incremental_masks_equal_the_state_recomputed(seed, B, fixed):
    rng = np.random.default_rng(seed)
    m = PositionMasks(CLASS, B, CLASS.position_vocab(1), fixed)
    while not m.done.all():
        allowed = m.allowed_positions()
        np.testing.assert_array_equal(allowed, _plain_allowed(m))
        pos = np.array([
            CLASS.position_start(1) if m.phase[i] == 1 else (int(rng.choice(np.flatnonzero(allowed[i]))) if allowed[i].any() else 0)
            for i in range(B)
        ])
        m.advance(pos, rng.random(B) < 0.8)  # some samples skip a step


def _plain_generate(be, layout, B, classes, params):
    """The generation loop written plainly (fresh arrays, per-sample state, plain sampling math):
    what the buffered generator must reproduce token for token (no prefix, no guidance)."""
    nc, nf, K, L = layout.n_coarse, layout.n_fine, layout.n_codes, layout.max_length
    cls = np.asarray(classes)
    content, position, segment = np.full((B, L), K), np.full((B, L), nf), np.ones((B, L), np.int64)
    content[:, 0], position[:, 0], segment[:, 0] = K + 2 + cls, nc + 2 + cls, 0
    phase, used, todo = np.zeros(B, int), np.zeros((B, nc), bool), np.zeros((B, nf), bool)
    region = (np.arange(nf) // layout.fine_hw[1] // 2) * layout.coarse_hw[1] + np.arange(nf) % layout.fine_hw[1] // 2
    rng, lengths, t = make_rng(params.seed), np.zeros(B, np.int64), 0
    be.begin(B)
    logits = be.position_step(content[:, 0], position[:, 0], segment[:, 0], 0)
    code_mask = np.zeros(layout.content_vocab, bool)
    code_mask[:K] = True
    while True:
        active, seg = phase != 3, (phase != 0).astype(np.int64)
        m = SimpleNamespace(phase=phase, vocab=logits.shape[1], nc=nc, nf=nf, coarse_used=used, fine_todo=todo,
                            coarse_eos=nc + 1, fine_eos=nf + 1, fixed=params.fixed_fine_positions)
        probs = _plain_probs(logits, _plain_allowed(m), params.temperature, params.top_k_pos, params.top_p_pos)
        pos = _plain_draw(probs, rng, params.greedy)
        pos = np.where(phase == 1, nf + 2 + cls, pos)
        for i in np.flatnonzero(active):
            p = int(pos[i])
            if phase[i] == 0 and p == nc + 1:
                phase[i], todo[i] = 1, ~used[i][region]
            elif phase[i] == 0:
                used[i, p] = True
            elif phase[i] == 1:
                phase[i] = 2
            elif p == nf + 1:
                phase[i] = 3
            else:
                todo[i, p] = False
        position[active, t + 1], segment[active, t + 1] = pos[active], seg[active]
        c_logits = be.content_step(position[:, t + 1], segment[:, t + 1], t)
        probs = _plain_probs(c_logits, np.broadcast_to(code_mask, c_logits.shape), params.temperature, params.top_k, params.top_p)
        con = _plain_draw(probs, rng, params.greedy)
        grid = np.where(seg == 0, nc, nf)
        con = np.where(pos < grid, con, np.where(pos == grid + 1, K + 1, K + 2 + cls))
        content[active, t + 1] = con[active]
        lengths[active & (phase == 3)] = t + 2
        if (phase == 3).all():
            break
        t += 1
        logits = be.position_step(content[:, t], position[:, t], segment[:, t], t)
    T = int(lengths.max())
    return content[:, :T], position[:, :T], segment[:, :T], lengths


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.booleans(),
       st.sampled_from([dict(), dict(top_k=3, top_p_pos=0.9), dict(temperature=0.5, top_k_pos=4, top_p=0.8), dict(greedy=True)]))
def test_generator_reproduces_the_plain_loop_exactly(seed, B, fixed, kw):
    classes = list(np.random.default_rng(seed).integers(0, 3, B))
    params = SamplingParams(seed=seed, fixed_fine_positions=fixed, **kw)
    got = generate_tokens(FakeBackend(CLASS), CLASS, B, classes, params)
    want = _plain_generate(FakeBackend(CLASS), CLASS, B, classes, params)
    for a, b in zip((got.content, got.position, got.segment, got.lengths), want):
        np.testing.assert_array_equal(a, b)
