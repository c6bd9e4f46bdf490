"""DQ-VAE reference model: shapes, routers, budget loss, quantizer EMA/restart, determinism."""

from __future__ import annotations

import pytest
import torch

from dq_edge.errors import ConfigError, InputError
from dq_edge.models import build_vae
from dq_edge.models.quantizer import VectorQuantizer
from dq_edge.models.routers import EntropyRouter, entropy_bins, percentile_thresholds, region_entropy
from dq_edge.models.vae_config import PRESETS, VAEConfig
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def tiny():
    return build_vae("tiny", seed=0).eval()


@pytest.mark.parametrize("name", ["tiny", "fmnist32", "emoji64"])
def test_small_presets_run(name):
    vae = build_vae(name, seed=0).eval()
    cfg = vae.config
    x = images(2, cfg.image_size)
    hc, hf = vae.features(x)
    assert hc.shape == (2, vae.feature_channels, *cfg.coarse_hw)
    assert hf.shape == (2, vae.feature_channels, *cfg.fine_hw)
    enc = vae.encode(x)
    assert enc.grain.dtype == torch.int64 and enc.grain.shape == (2, *cfg.coarse_hw)
    assert enc.codes.dtype == torch.int64 and enc.codes.shape == (2, *cfg.fine_hw)
    assert int(enc.codes.max()) < cfg.n_codes and set(enc.grain.unique().tolist()) <= {0, 1}
    assert vae.decode_codes(enc.codes).shape == x.shape


def test_preset_grids():
    assert PRESETS["emoji64"].coarse_hw == (8, 8) and PRESETS["emoji64"].fine_hw == (16, 16)
    assert PRESETS["fmnist32"].image_size == 32
    layout = build_vae("tiny").token_layout(n_classes=3)
    assert (layout.n_coarse, layout.n_fine, layout.n_codes, layout.n_classes) == (16, 64, 64, 3)


@pytest.mark.parametrize("name", ["imagenet256-dual", "ffhq256-dual", "imagenet256-dual-entropy"])
def test_big_presets_shapes_on_meta(name):
    with torch.device("meta"):
        vae = build_vae(name).eval()
        x = torch.empty(1, 3, 256, 256)
        hc, hf = vae.features(x)
        z = vae.quant_conv(vae._merge(hc, hf, torch.zeros(1, 16, 16, dtype=torch.long)))
        img = vae.decode_codes(torch.zeros(1, 32, 32, dtype=torch.long))
    assert hc.shape == (1, 256, 16, 16) and hf.shape == (1, 256, 32, 32)
    assert z.shape == (1, 256, 32, 32) and img.shape == (1, 3, 256, 256)
    assert vae.quantize.codebook.weight.shape == (1025, 256)  # + padding row


def test_encode_equals_graph_split_and_is_deterministic(tiny):
    x = images(3, 16, seed=1)
    with torch.no_grad():
        enc = tiny.encode(x)
        grain, codes = tiny.dgc(*tiny.features(x), x)
        logits = tiny.router(*tiny.features(x))
    assert torch.equal(enc.grain, grain) and torch.equal(enc.codes, codes)
    assert torch.equal(enc.grain, logits.argmax(-1))  # eval = argmax, no Gumbel noise
    again = tiny.encode(x)
    assert torch.equal(again.grain, enc.grain) and torch.equal(again.codes, enc.codes)


def test_coarse_regions_share_one_code(tiny):
    enc = tiny.encode(images(2, 16, seed=2))
    cells = enc.codes.reshape(2, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(2, 4, 4, 4)  # [B,Hc,Wc,4]
    coarse = enc.grain == 0
    assert coarse.any()
    assert (cells[coarse] == cells[coarse][:, :1]).all()


def test_router_gradients_through_gate_and_budget():
    vae = build_vae(PRESETS["tiny"].with_(target_fine_ratio=0.1), seed=0).train()
    x = images(2, 16, seed=3)
    out = vae(x)
    assert out.gate.shape == (2, 4, 4, 2) and torch.all(out.gate.sum(-1) == 1)
    out.recon.square().mean().backward(retain_graph=True)
    router_grads = [p.grad for p in vae.router.parameters()]
    assert all(g is not None for g in router_grads) and sum(g.abs().sum() for g in router_grads) > 0
    vae.zero_grad()
    assert out.budget_loss > 0
    out.budget_loss.backward()
    assert vae.router.gate[2].weight.grad.abs().sum() > 0
    assert vae.decoder.conv_out.weight.grad is None  # budget loss touches only the router path
    expected = 2 * vae.config.budget_gamma * (out.gate[..., 1].mean() - 0.1) ** 2
    torch.testing.assert_close(out.budget_loss, expected)
    torch.testing.assert_close(out.fine_ratio, out.grain.float().mean())
    assert vae.last_layer_weight() is vae.decoder.conv_out.weight


def test_training_gate_is_stochastic_eval_is_not():
    vae = build_vae("tiny", seed=0)
    x = images(4, 16, seed=4)
    vae.train()
    torch.manual_seed(0)
    a = vae(x).grain
    torch.manual_seed(1)
    b = vae(x).grain
    assert not torch.equal(a, b)


def test_codebook_loss_weights_coarse_cells_quarter():
    q = VectorQuantizer(4, 2, beta=0.25, decay=0.99, eps=1e-5, restart_unused=False).eval()
    q.codebook.weight.data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
    z = torch.tensor([[0.1, 0.9], [0.2, -0.1]]).reshape(1, 2, 1, 2)  # two vectors (0.1,0.2), (0.9,-0.1)
    w = torch.tensor([0.25, 1.0]).reshape(1, 1, 1, 2)
    _, loss, codes = q(z, w)
    assert codes.tolist() == [[[0, 1]]]
    err = torch.tensor([0.1**2 + 0.2**2, 0.1**2 + 0.1**2]) * torch.tensor([0.25, 1.0])
    torch.testing.assert_close(loss, 1.25 * err.sum() / 4)  # (beta + 1) * mean over B*H*W*D


def test_padding_row_never_selected():
    q = VectorQuantizer(3, 2, 0.25, 0.99, 1e-5, False).eval()
    q.codebook.weight.data = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [0.0, 0.0]])
    assert q.codes(torch.zeros(1, 2, 1, 1)).item() in (0, 1, 2)


def test_ema_update_and_dead_code_restart():
    torch.manual_seed(0)
    q = VectorQuantizer(4, 2, 0.25, decay=0.9, eps=1e-5, restart_unused=False).train()
    book = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    q.codebook.weight.data[:-1] = book
    q.codebook.embed_ema.copy_(book)
    q.codebook.cluster_size_ema.fill_(2.0)
    vecs = torch.tensor([[0.1, 0.0], [0.9, 0.1], [1.1, -0.1]])  # codes 0, 1, 1
    q(vecs.T.reshape(1, 2, 1, 3), torch.ones(1, 1, 1, 3))
    counts = torch.tensor([1.0, 2.0, 0.0, 0.0])
    sums = torch.tensor([[0.1, 0.0], [2.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    size = 0.9 * 2.0 + 0.1 * counts
    embed = 0.9 * book + 0.1 * sums
    torch.testing.assert_close(q.codebook.cluster_size_ema, size)
    torch.testing.assert_close(q.codebook.embed_ema, embed)
    n = size.sum()
    torch.testing.assert_close(q.codebook.weight[:-1], embed / (n * (size + 1e-5) / (n + 4 * 1e-5)).unsqueeze(1))

    # restart: code 3 has EMA usage < 1 and is replaced by (a noisy copy of) a batch vector
    r = VectorQuantizer(4, 2, 0.25, decay=0.5, eps=1e-5, restart_unused=True).train()
    r.codebook.weight.data[:-1] = book
    r.codebook.embed_ema.copy_(book)
    r.codebook.cluster_size_ema.copy_(torch.tensor([4.0, 4.0, 4.0, 1.0]))
    r(vecs.T.reshape(1, 2, 1, 3), torch.ones(1, 1, 1, 3))
    assert r.codebook.cluster_size_ema[3] == 1.0  # reset to 1
    restarted = r.codebook.embed_ema[3]
    assert torch.min((vecs - restarted).abs().max(dim=1).values) < 0.01  # one of the batch vectors
    assert torch.equal(r.codebook.embed_ema[0], 0.5 * book[0] + 0.5 * torch.tensor([0.1, 0.0]))  # used codes kept


def test_entropy_router_thresholds_and_bins():
    cfg = PRESETS["tiny-entropy"]
    x = images(2, 16, seed=5)
    x[:, :, :8, :8] = 0.3  # flat regions -> minimal entropy
    for bins in ("legacy", "current"):
        ent = region_entropy(x, 4, entropy_bins(bins), 0.01)
        table = percentile_thresholds([ent])
        assert list(table) == [str(p) for p in range(1, 100)]
        assert list(table.values()) == sorted(table.values())
        router = EntropyRouter(cfg.with_(entropy_bins=bins), table)
        assert router.threshold == table["50"]
        grain = router(None, None, x).argmax(-1)
        assert torch.equal(grain, (ent > table["50"]).long())
        assert (grain[:, :2, :2] == 0).all()  # flat quarter stays coarse
    assert torch.equal(entropy_bins("legacy"), torch.linspace(0, 1, 32))
    assert torch.equal(entropy_bins("current"), torch.linspace(-1, 1, 32))
    assert cfg.with_(target_fine_ratio=0.3).threshold_key == "70"
    with pytest.raises(ConfigError, match="no key '50'"):
        EntropyRouter(cfg, {"10": 1.0})
    with pytest.raises(ConfigError, match="no thresholds"):
        EntropyRouter(cfg)(None, None, x)


def test_entropy_vae_forward_has_no_budget():
    vae = build_vae("tiny-entropy", thresholds={"50": 2.0}, seed=0).train()
    out = vae(images(2, 16))
    assert out.budget_loss.item() == 0.0 and out.codebook_loss > 0


def test_wrong_image_size_and_bad_config(tiny):
    with pytest.raises(InputError, match="expected images"):
        tiny.encode(images(1, 32))
    with pytest.raises(ConfigError, match="unknown VAE preset"):
        build_vae("huge")
    with pytest.raises(ConfigError, match="only dual grain"):
        VAEConfig(grains=3).validate()
    with pytest.raises(ConfigError, match="unknown VAE config keys"):
        VAEConfig.from_dict({**VAEConfig().to_dict(), "bogus": 1})
    assert VAEConfig.from_dict(PRESETS["emoji64"].to_dict()) == PRESETS["emoji64"]
