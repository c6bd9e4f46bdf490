from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dq_edge.errors import CheckpointError, ConfigError
from dq_edge.models.transformer import StackedTransformer, build_transformer, load_transformer, save_transformer
from dq_edge.models.transformer_config import TransformerConfig
from dq_edge.sequences import encode_batch
from dq_edge.tokens import TokenLayout
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)

LAYOUT = TokenLayout(n_codes=10, coarse_hw=(2, 2), fine_hw=(4, 4))


def _tokens(grain, classes=None, layout=LAYOUT, seed=0):
    grain = np.asarray(grain)
    codes = np.random.default_rng(seed).integers(0, layout.n_codes, (len(grain), *layout.fine_hw))
    tb = encode_batch(layout, grain, codes, classes)
    return tuple(torch.from_numpy(a) for a in (tb.content, tb.position, tb.segment))


@pytest.mark.parametrize("n_classes, params, vocab", [(0, 308_884_480, (1027, 259, 1027)), (1000, 313_999_360, (2026, 1258, 2026))])
def test_p6c18_matches_official_sizes(n_classes, params, vocab):
    layout = TokenLayout(n_codes=1024, coarse_hw=(16, 16), fine_hw=(32, 32), n_classes=n_classes)
    cfg = TransformerConfig.from_preset("p6c18", layout)
    assert (cfg.content_vocab, cfg.coarse_position_vocab, cfg.fine_position_vocab) == vocab
    with torch.device("meta"):
        model = StackedTransformer(cfg)
    assert sum(p.numel() for p in model.parameters()) == params


def test_outputs_and_causality():
    tr = build_transformer("tiny", LAYOUT, seed=0)
    c, p, s = _tokens([[[0, 1], [1, 0]]])
    pl, cl = tr(c, p, s)
    T = c.shape[1]
    assert pl.shape == (1, T - 1, LAYOUT.position_vocab(1)) and cl.shape == (1, T - 1, LAYOUT.content_vocab)
    j = 3  # change token j: rows < j are untouched; the content row j-1 sees position[j]
    c2, p2 = c.clone(), p.clone()
    c2[0, j] = (c2[0, j] + 1) % LAYOUT.n_codes
    pl2, cl2 = tr(c2, p, s)
    torch.testing.assert_close(pl2[:, :j], pl[:, :j])
    torch.testing.assert_close(cl2[:, :j], cl[:, :j])
    assert (pl2[:, j] - pl[:, j]).abs().max() > 0.01  # a real effect (~0.2 here), not rounding
    p2[0, j] = (p2[0, j] + 1) % LAYOUT.n_coarse
    _, cl3 = tr(c, p2, s)
    torch.testing.assert_close(cl3[:, : j - 1], cl[:, : j - 1])
    assert (cl3[:, j - 1] - cl[:, j - 1]).abs().max() > 0.01  # ~0.1 here


@torch.no_grad()
def test_content_row_at_coarse_eos_uses_fine_table():
    """The content row at the coarse EOS predicts the fine start token's content, so it must add
    the fine table's start row. Checked twice: the embedding itself, and the logits' response to
    a zero-mean random change of that row (a constant change would be removed by the following
    LayerNorm and prove nothing)."""
    tr = build_transformer("tiny", LAYOUT, seed=0)
    c, p, s = _tokens([[[0, 0], [0, 1]]])
    ce = int((p[0] == LAYOUT.position_eos(0)).nonzero()[0])
    fine_start = LAYOUT.position_start(1)
    assert int(p[0, ce + 1]) == fine_start and int(s[0, ce + 1]) == 1
    added = tr.grid_position_embedding(p[:, 1:], s[:, 1:])  # [1, T-1, C]: row t embeds position[t+1]
    assert torch.equal(added[0, ce], tr.content_fine_pos_emb.weight[fine_start])  # a row copy, no arithmetic
    coarse_alias = min(fine_start, tr.config.coarse_position_vocab - 1)  # where the clamp sends the id
    assert not torch.equal(added[0, ce], tr.content_coarse_pos_emb.weight[coarse_alias])  # distinct random rows

    _, before = tr(c, p, s)
    delta = torch.randn(tr.config.width, generator=torch.Generator().manual_seed(0))
    delta -= delta.mean()  # zero mean: only its shape can change the LayerNorm's output
    tr.content_fine_pos_emb.weight[fine_start] += delta
    _, fine_changed = tr(c, p, s)
    torch.testing.assert_close(fine_changed[:, :ce], before[:, :ce])  # causal: earlier rows never see it
    # logits are O(0.1-1) here; a row read by the model moves them by far more than rounding (~1e-7)
    assert (fine_changed[0, ce] - before[0, ce]).abs().max() > 0.05


@torch.no_grad()
def test_loss_ignores_padding():
    tr = build_transformer("tiny", LAYOUT, seed=0)
    short = [[0, 0], [0, 0]]
    c, p, s = _tokens([short, [[1, 1], [1, 1]]], seed=4)  # sample 0 is padded to the long one
    alone = tr.loss_terms(c[:1, : int((c[0] != LAYOUT.content_pad).sum())], p[:1, :8], s[:1, :8])
    padded = tr.loss_terms(c[:1], p[:1], s[:1])
    for k in ("content", "coarse_position", "fine_position", "loss"):
        torch.testing.assert_close(padded[k], alone[k])
    assert torch.isclose(padded["loss"], padded["content"] + (padded["coarse_position"] + padded["fine_position"]) / 2)


def test_training_reduces_loss():
    torch.manual_seed(0)
    tr = build_transformer("tiny", LAYOUT, seed=0).train()
    c, p, s = _tokens([[[0, 1], [1, 0]], [[1, 1], [0, 0]]], seed=2)
    opt = torch.optim.AdamW(tr.parameters(), lr=3e-3)
    first = tr.loss(c, p, s).item()
    for _ in range(40):
        opt.zero_grad()
        loss = tr.loss(c, p, s)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_save_load_round_trip_and_update(tmp_path):
    layout = TokenLayout(n_codes=10, coarse_hw=(2, 2), fine_hw=(4, 4), n_classes=4, null_class=True)
    tr = build_transformer("tiny", layout, seed=1)
    folder = save_transformer(tr, tmp_path / "m")
    back = load_transformer(folder)
    assert back.config == tr.config
    c, p, s = _tokens([[[0, 1], [1, 1]]], classes=[2], layout=layout)
    torch.testing.assert_close(back(c, p, s), tr(c, p, s), rtol=0, atol=0)
    # replacing the section keeps the rest of the folder
    cfg = json.loads((folder / "config.json").read_text())
    cfg["data"] = {"name": "kept"}
    (folder / "config.json").write_text(json.dumps(cfg))
    tr2 = build_transformer("tiny", layout, seed=2)
    save_transformer(tr2, folder)
    saved = json.loads((folder / "config.json").read_text())
    assert saved["data"] == {"name": "kept"} and TokenLayout.from_dict(saved["tokens"]) == layout
    torch.testing.assert_close(load_transformer(folder)(c, p, s), tr2(c, p, s), rtol=0, atol=0)


def test_load_errors(tmp_path):
    tr = build_transformer("tiny", LAYOUT, seed=1)
    folder = save_transformer(tr, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["transformer"]["width"] = 64
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        load_transformer(folder)
    cfg["transformer"] = None
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="no transformer"):
        load_transformer(folder)
    with pytest.raises(ConfigError, match="preset"):
        build_transformer("huge", LAYOUT)
    with pytest.raises(ConfigError, match="block size"):
        TransformerConfig.from_preset("tiny", LAYOUT, block_size=4)
