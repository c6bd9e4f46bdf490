"""Official stage-1 import: a checkpoint in the official key layout (built from key/shape facts)
is imported through the CLI and checked against an independent functional re-implementation
of the official computations (tests/official_dq_reference.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

import official_dq_reference as ref
from dq_edge.cli.main import main
from dq_edge.models import load_vae
from dq_edge.models.official_stage1 import stage1_from_state_dict
from dq_edge.models.routers import region_entropy, entropy_bins
from dq_edge.models.vae_config import PRESETS
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)


def structured_images(n: int = 3, seed: int = 1) -> torch.Tensor:
    """16x16 images in [-1,1] with flat, gradient and noisy 4x4 regions (entropies differ)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, 3, 16, 16)
    for b in range(n):
        for i in range(4):
            for j in range(4):
                kind = int(torch.randint(0, 3, (1,), generator=g))
                base = torch.rand(3, 1, 1, generator=g) * 2 - 1
                if kind == 0:
                    patch = base.expand(3, 4, 4)
                elif kind == 1:
                    patch = base + torch.linspace(0, 0.6, 4).reshape(1, 1, 4)
                else:
                    patch = torch.rand(3, 4, 4, generator=g) * 2 - 1
                x[b, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4] = patch.clamp(-1, 1)
    return x


def _prepare_feature_sd(x: torch.Tensor) -> dict[str, torch.Tensor]:
    sd = ref.random_official_state_dict(ref.TINY_PARAMS, with_feature_router=True, seed=0)
    hc, hf = ref.ref_features(sd, ref.TINY_PARAMS, x)
    logits = ref.ref_feature_gate(sd, hc, hf)
    diff = (logits[..., 1] - logits[..., 0]).flatten()
    sd["encoder.router.gate.2.bias"][1] -= diff.median() + 1e-3  # about half the regions fine
    grain = ref.ref_feature_gate(sd, hc, hf).argmax(-1)
    _codebook_from_data(sd, hc, hf, grain)
    return sd


def _codebook_from_data(sd, hc, hf, grain, seed: int = 3) -> None:
    """Codes near real vectors so many codes get used; padding row = an exact input vector."""
    up = grain.repeat_interleave(2, -1).repeat_interleave(2, -2).unsqueeze(1)
    merged = torch.where(up == 0, hc.repeat_interleave(2, -1).repeat_interleave(2, -2), hf)
    z = ref._c(sd, "quant_conv", merged).permute(0, 2, 3, 1).reshape(-1, 8)
    g = torch.Generator().manual_seed(seed)
    k = sd["quantize.codebook.weight"].shape[0] - 1
    rows = z[torch.randperm(z.shape[0], generator=g)[:k]] + 0.05 * torch.randn(k, 8, generator=g)
    sd["quantize.codebook.weight"] = torch.cat([rows, z[:1].clone()])  # row K == an input: must never win


def _write_official(tmp: Path, sd: dict, target: str, params: dict, name: str = "model") -> tuple[Path, Path]:
    ckpt = tmp / f"{name}.ckpt"
    full = dict(sd)
    full["loss.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4)
    full["loss.perceptual_loss.net.slice1.0.weight"] = torch.randn(2, 3, 3, 3)
    torch.save({"epoch": 3, "global_step": 100, "pytorch-lightning_version": "1.5.6", "state_dict": full}, ckpt)
    cfg = tmp / f"{name}.yml"
    cfg.write_text(yaml.safe_dump({"model": {"base_learning_rate": 4.5e-6, "target": target, "params": params}}))
    return ckpt, cfg


@pytest.fixture(scope="module")
def feature_import(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feat")
    x = structured_images()
    sd = _prepare_feature_sd(x)
    ckpt, cfg = _write_official(tmp, sd, ref.FEATURE_TARGET, ref.TINY_PARAMS)
    out = tmp / "imported"
    assert main(["import-official", "--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out)]) == 0
    return sd, x, out, ckpt, cfg


def test_feature_import_matches_official_numerics(feature_import, capsys):
    sd, x, out, _, _ = feature_import
    vae = load_vae(out)
    assert not vae.training and vae.config.router == "feature" and vae.config.target_fine_ratio == 0.5
    hc_ref, hf_ref = ref.ref_features(sd, ref.TINY_PARAMS, x)
    grain_ref = ref.ref_feature_gate(sd, hc_ref, hf_ref).argmax(-1)
    codes_ref = ref.ref_merge_and_code(sd, hc_ref, hf_ref, grain_ref)
    with torch.no_grad():
        hc, hf = vae.features(x)
        enc = vae.encode(x)
        recon = vae.decode_codes(enc.codes)
    torch.testing.assert_close(hc, hc_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(hf, hf_ref, atol=1e-4, rtol=1e-4)
    assert 0 < grain_ref.float().mean() < 1  # both grains present: the merge is exercised
    assert torch.equal(enc.grain, grain_ref)
    assert torch.equal(enc.codes, codes_ref)
    assert enc.codes.unique().numel() > 4
    assert (enc.codes < 16).all()  # padding row 16 (an exact input vector) is never chosen
    torch.testing.assert_close(recon, ref.ref_decode(sd, ref.TINY_PARAMS, codes_ref), atol=1e-4, rtol=0)
    # coarse regions carry one code on their 4 cells
    coarse = enc.grain[0] == 0
    cells = enc.codes[0].reshape(4, 2, 4, 2).permute(0, 2, 1, 3).reshape(4, 4, 4)
    assert (cells[coarse] == cells[coarse][:, :1]).all()


def test_feature_import_config_and_training_keys(feature_import):
    _, _, out, _, _ = feature_import
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vae"]["notes"]["dropped_training_keys"] == 2
    assert cfg["source"]["target"] == ref.FEATURE_TARGET
    assert cfg["tokens"]["coarse_hw"] == [4, 4] and cfg["tokens"]["fine_hw"] == [8, 8]
    assert not (out / "thresholds.json").exists()


@pytest.mark.parametrize("legacy", [True, False])
def test_entropy_import_both_bin_sets(tmp_path, legacy):
    x = structured_images(seed=5)
    ent = ref.ref_entropy(x, 4, legacy)
    thresholds = {str(p): float(torch.quantile(ent.flatten(), p / 100)) for p in range(1, 100)}
    (tmp_path / "thresholds.json").write_text(json.dumps(thresholds))
    params = ref.entropy_params("thresholds.json", 0.5)  # relative: resolves against the YAML's folder
    sd = ref.random_official_state_dict(params, with_feature_router=False, seed=1)
    hc, hf = ref.ref_features(sd, params, x)
    grain_ref = (ent > thresholds["50"]).long()
    _codebook_from_data(sd, hc, hf, grain_ref)
    ckpt, cfg = _write_official(tmp_path, sd, ref.ENTROPY_TARGET, params)
    out = tmp_path / "imported"
    flag = "--legacy-entropy-bins" if legacy else "--current-entropy-bins"
    assert main(["import-official", "--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out), flag]) == 0
    vae = load_vae(out)
    assert vae.config.entropy_bins == ("legacy" if legacy else "current")
    enc = vae.encode(x)
    assert 0 < grain_ref.float().mean() < 1
    assert torch.equal(enc.grain, grain_ref)
    assert torch.equal(enc.codes, ref.ref_merge_and_code(sd, hc, hf, grain_ref))
    torch.testing.assert_close(vae.decode_codes(enc.codes), ref.ref_decode(sd, params, enc.codes), atol=1e-4, rtol=0)
    assert json.loads((out / "thresholds.json").read_text())["50"] == thresholds["50"]


def test_entropy_default_is_legacy_bins(tmp_path, capsys):
    params = ref.entropy_params(str(tmp_path / "t.json"), 0.3)  # absolute path; ratio 0.3 -> key "70"
    (tmp_path / "t.json").write_text(json.dumps({"70": 1.25}))
    sd = ref.random_official_state_dict(params, with_feature_router=False)
    ckpt, cfg = _write_official(tmp_path, sd, ref.ENTROPY_TARGET, params)
    assert main(["import-official", "--ckpt", str(ckpt), "--config", str(cfg), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "legacy" in err and "dropped 2" in err
    vae = load_vae(tmp_path / "o")
    assert vae.config.entropy_bins == "legacy" and vae.router.threshold == 1.25
    assert "legacy" in json.loads((tmp_path / "o" / "config.json").read_text())["vae"]["notes"]["entropy_bins"]


def test_region_entropy_equals_unfold_reference_both_bins():
    x = structured_images(n=2, seed=9)
    for legacy in (True, False):
        ours = region_entropy(x, 4, entropy_bins("legacy" if legacy else "current"), 0.01)
        # different arithmetic (ours vs unfold): equal up to float rounding, entropies are O(1) nats
        torch.testing.assert_close(ours, ref.ref_entropy(x, 4, legacy), rtol=0, atol=1e-5)
    # the two bin sets really differ on images in [-1, 1]: by ~1 nat here, far above rounding
    assert (ref.ref_entropy(x, 4, True) - ref.ref_entropy(x, 4, False)).abs().max() > 0.1


def test_stage1_from_state_dict_api():
    sd = ref.random_official_state_dict(ref.TINY_PARAMS, with_feature_router=True)
    section, tensors, extra = stage1_from_state_dict(sd, ref.TINY_PARAMS, None, None, target=ref.FEATURE_TARGET)
    assert section["router"] == "feature" and extra == {}
    assert all(k.startswith("vae.") for k in tensors)
    assert torch.equal(tensors["vae.router.gate.0.weight"], sd["encoder.router.gate.0.weight"])
    assert torch.equal(tensors["vae.encoder.coarse.mid.attn_1.q.weight"], sd["encoder.mid_coarse.attn_1.q.weight"])


# ----- bad input: one line, exit 1, nothing under --out -----
def _run_err(capsys, args) -> tuple[int, str]:
    rc = main(["import-official", *args])
    err = capsys.readouterr().err.strip()
    return rc, err


def _assert_clean_failure(rc, err, out: Path, *needles):
    assert rc == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "hint:" in err
    assert "Traceback" not in err
    for n in needles:
        assert n in err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no temp leftovers


def test_missing_and_corrupt_checkpoint(feature_import, tmp_path, capsys):
    _, _, _, _, cfg = feature_import
    out = tmp_path / "o"
    rc, err = _run_err(capsys, ["--ckpt", str(tmp_path / "nope.ckpt"), "--config", str(cfg), "--out", str(out)])
    _assert_clean_failure(rc, err, out, "does not exist")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    rc, err = _run_err(capsys, ["--ckpt", str(bad), "--config", str(cfg), "--out", str(out)])
    _assert_clean_failure(rc, err, out, "cannot read checkpoint")


def test_unsupported_target_and_triple(feature_import, tmp_path, capsys):
    _, _, _, ckpt, _ = feature_import
    out = tmp_path / "o"
    for target, needle in (("models.stage1.vqgan.VQModel", "unsupported model target"),
                           ("models.stage1_dynamic.dqvae_triple_feat.TripleGrainVQModel", "triple")):
        cfg = tmp_path / "x.yml"
        cfg.write_text(yaml.safe_dump({"model": {"target": target, "params": ref.TINY_PARAMS}}))
        rc, err = _run_err(capsys, ["--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out)])
        _assert_clean_failure(rc, err, out, needle)


def test_key_and_shape_mismatch_listed(tmp_path, capsys):
    sd = ref.random_official_state_dict(ref.TINY_PARAMS, with_feature_router=True)
    del sd["decoder.conv_out.bias"]
    sd["encoder.extra.weight"] = torch.zeros(1)
    sd["quant_conv.weight"] = torch.zeros(8, 32, 3, 3)
    ckpt, cfg = _write_official(tmp_path, sd, ref.FEATURE_TARGET, ref.TINY_PARAMS)
    out = tmp_path / "o"
    rc, err = _run_err(capsys, ["--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out)])
    _assert_clean_failure(rc, err, out, "missing: decoder.conv_out.bias", "unknown: encoder.extra.weight", "wrong shape: quant_conv.weight")
    # a YAML with other dims than the checkpoint is a shape mismatch too
    params = copy.deepcopy(ref.TINY_PARAMS)
    params["vqconfig"]["params"]["codebook_size"] = 32
    sd = ref.random_official_state_dict(ref.TINY_PARAMS, with_feature_router=True)
    ckpt, cfg = _write_official(tmp_path, sd, ref.FEATURE_TARGET, params, name="m2")
    rc, err = _run_err(capsys, ["--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out)])
    _assert_clean_failure(rc, err, out, "wrong shape: quantize.codebook")


def test_thresholds_without_key_and_missing_file(tmp_path, capsys):
    params = ref.entropy_params("thr.json", 0.5)
    (tmp_path / "thr.json").write_text(json.dumps({"30": 1.0}))
    sd = ref.random_official_state_dict(params, with_feature_router=False)
    ckpt, cfg = _write_official(tmp_path, sd, ref.ENTROPY_TARGET, params)
    out = tmp_path / "o"
    rc, err = _run_err(capsys, ["--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out)])
    _assert_clean_failure(rc, err, out, "no key '50'")
    rc, err = _run_err(capsys, ["--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out), "--thresholds", str(tmp_path / "none.json")])
    _assert_clean_failure(rc, err, out, "does not exist")


def test_existing_out_needs_force(feature_import, tmp_path, capsys):
    _, _, _, ckpt, cfg = feature_import
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    rc = main(["import-official", "--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out)])
    assert rc == 2 and (out / "keep.txt").read_text() == "user data"
    assert "--overwrite" in capsys.readouterr().err
    # a folder dq-edge did not write is never replaced, even when asked
    assert main(["import-official", "--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out), "--overwrite"]) == 2
    assert "not a folder dq-edge wrote" in capsys.readouterr().err and (out / "keep.txt").read_text() == "user data"
    ours = tmp_path / "imported"
    assert main(["import-official", "--ckpt", str(ckpt), "--config", str(cfg), "--out", str(ours)]) == 0
    assert main(["import-official", "--ckpt", str(ckpt), "--config", str(cfg), "--out", str(ours), "--force"]) == 0  # old spelling
    assert (ours / "model.safetensors").exists()


def test_official_dims_parameter_counts():
    with torch.device("meta"):
        from dq_edge.models import build_vae

        counts = {name: sum(p.numel() for p in build_vae(name).parameters()) for name in ("imagenet256-dual", "imagenet256-dual-entropy")}
    assert counts == {"imagenet256-dual": 48_098_437, "imagenet256-dual-entropy": 47_833_731}
    assert PRESETS["imagenet256-dual"].fine_hw == (32, 32) and PRESETS["imagenet256-dual"].coarse_hw == (16, 16)


def test_lightning_objects_beside_weights_are_stubbed_not_imported(tmp_path, monkeypatch):
    """Lightning checkpoints pickle callback classes etc. next to the weights; a weights-only
    load refuses them, so they are replaced by inert stubs (the module is gone at load time)."""
    import sys
    import types

    from dq_edge.models.official_stage1 import read_checkpoint

    mod = types.ModuleType("fake_lightning_callbacks")

    class ModelCheckpoint:
        def __init__(self):
            self.dirpath = "ckpts"

    ModelCheckpoint.__module__ = mod.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    mod.ModelCheckpoint = ModelCheckpoint
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    sd = ref.random_official_state_dict(ref.TINY_PARAMS, with_feature_router=True)
    torch.save({"callbacks": {ModelCheckpoint: {"best": torch.tensor(1.0)}}, "obj": ModelCheckpoint(), "state_dict": sd}, tmp_path / "pl.ckpt")
    monkeypatch.delitem(sys.modules, mod.__name__)
    loaded = read_checkpoint(tmp_path / "pl.ckpt")
    assert sorted(loaded) == sorted(sd) and torch.equal(loaded["quant_conv.weight"], sd["quant_conv.weight"])
