"""`--sampler official` reproduces the official `sample_from_scratch` token for token on an
imported official-format checkpoint (tiny, random weights), checked against an independent
re-implementation of the official algorithm (tests/official_sampler_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest

import official_dq_reference as ref1
from dq_edge.cli.main import main
from dq_edge.errors import InputError
from dq_edge.generation import SamplingParams, generate_tokens, known_code_maps, open_generator
from dq_edge.models.torch_backend import TorchBackend
from dq_edge.models.transformer import load_transformer
from official_sampler_reference import official_sample, official_streams_per_sample
from official_stackgpt_reference import random_stage2_state_dict
from test_import_stage2 import K, NC, NF, _write, _yaml
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module", params=[0, 5], ids=["uncond", "class"])
def imported(request, tmp_path_factory):
    n_classes = request.param
    tmp = tmp_path_factory.mktemp(f"official{n_classes}")
    cfg = _yaml(n_classes)
    tp = cfg["model"]["params"]["transformer_config"]["params"]
    tsd = random_stage2_state_dict(tp, seed=3 + n_classes)
    s1 = ref1.random_official_state_dict(ref1.TINY_PARAMS, with_feature_router=True, seed=1)
    ckpt, yml = _write(tmp, cfg, tsd, s1)
    assert main(["import-official", "--ckpt", str(ckpt), "--config", str(yml), "--out", str(tmp / "model")]) == 0
    return load_transformer(tmp / "model"), tsd, tp, n_classes


def _ours_per_sample(tokens, layout):
    out = []
    for i in range(tokens.batch):
        c, p, s = tokens.sample(i)
        ce = int(np.flatnonzero(p == layout.position_eos(0))[0])
        fe = int(np.flatnonzero((p == layout.position_eos(1)) & (s == 1))[0])
        out.append((p[1:ce].tolist(), c[1:ce].tolist(), p[ce + 2 : fe].tolist(), c[ce + 2 : fe].tolist()))
    return out


SETTINGS = [
    dict(greedy=True),
    dict(seed=7, top_k=6, top_p_pos=0.9),
    dict(seed=11, temperature=1.5, top_k_pos=20, top_p=0.8),
]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("kw", SETTINGS, ids=["greedy", "topk-toppos", "temp-topkpos-topp"])
def test_official_sampler_matches_the_official_algorithm(imported, kw, batch):
    tr, tsd, tp, n_classes = imported
    classes = [3, 1][:batch] if n_classes else None
    params = SamplingParams(sampler="official", **kw)
    backend = TorchBackend(tr, max_batch=batch)
    ours = generate_tokens(backend, tr.layout, batch, classes, params)
    theirs = official_sample(tsd, tp, K, 4, 8, batch, classes, **kw)
    assert _ours_per_sample(ours, tr.layout) == official_streams_per_sample(*theirs, NC, NF)
    # the quirk that makes it "official": the last coarse region is never coded coarsely
    grain, _ = known_code_maps(tr.layout, ours)
    assert (grain.reshape(batch, -1)[:, NC - 1] == 1).all()


def test_official_quirks_visible_against_dq_edge_sampler(imported):
    """On the same weights the official rules do things dq-edge's grammar forbids: the fine
    stream may end before covering its regions (those cells decode as code 0)."""
    tr, tsd, tp, n_classes = imported
    classes = list(range(4)) if n_classes else None
    backend = TorchBackend(tr, max_batch=4)
    official = generate_tokens(backend, tr.layout, 4, classes, SamplingParams(sampler="official", seed=2))
    grain, codes = known_code_maps(tr.layout, official)
    fine_cells = np.repeat(np.repeat(grain, 2, axis=1), 2, axis=2).reshape(4, -1).sum(axis=1)
    covered = np.array([len(s[2]) for s in _ours_per_sample(official, tr.layout)])
    assert (covered <= fine_cells).all() and (covered < fine_cells).any()
    ours = generate_tokens(backend, tr.layout, 4, classes, SamplingParams(seed=2))
    assert [len(s[2]) for s in _ours_per_sample(ours, tr.layout)] == list(
        np.repeat(np.repeat(known_code_maps(tr.layout, ours)[0], 2, axis=1), 2, axis=2).reshape(4, -1).sum(axis=1)
    )


def test_official_sampler_refuses_what_it_cannot_do(imported):
    tr, _, _, n_classes = imported
    with pytest.raises(InputError, match="guidance"):
        SamplingParams(sampler="official", cfg_scale=2.0).validate()
    with pytest.raises(InputError, match="unknown sampler"):
        SamplingParams(sampler="paper").validate()
    gen = open_generator(TorchBackend(tr, max_batch=1), 1, [0] if n_classes else None, SamplingParams(sampler="official"))
    with pytest.raises(InputError, match="prefix"):
        gen.append_prefix(None)


def test_batch_pads_the_coarse_stream_between_the_streams(imported):
    """Two samples whose coarse streams differ in length: the shorter one waits with coarse
    PAD tokens, so its fine tokens sit at the batch's absolute positions (and still match)."""
    tr, tsd, tp, n_classes = imported
    classes = [3, 1] if n_classes else None
    for seed in range(20):
        theirs = official_streams_per_sample(*official_sample(tsd, tp, K, 4, 8, 2, classes, seed=seed), NC, NF)
        if len(theirs[0][0]) != len(theirs[1][0]):
            break
    else:
        pytest.fail("no seed gave coarse streams of different lengths")
    gen = open_generator(TorchBackend(tr, max_batch=2), 2, classes, SamplingParams(sampler="official", seed=seed))
    while not gen.is_done():
        gen.step()
    assert _ours_per_sample(gen.sequences(), tr.layout) == theirs
    short = int(len(theirs[1][0]) < len(theirs[0][0]))
    fed = gen.rows.position[short], gen.rows.segment[short]
    pads = int(((fed[0] == NC) & (fed[1] == 0)).sum())  # coarse PAD tokens the model saw
    assert pads == abs(len(theirs[0][0]) - len(theirs[1][0]))
