"""Stage-2 import: official-layout checkpoint + YAML -> one model folder; logits checked against an
independent functional version of the official network (tests/official_stackgpt_reference.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import official_dq_reference as ref1
from dq_edge.cli.main import main
from dq_edge.models.transformer import load_transformer
from dq_edge.models.vae import load_vae
from dq_edge.sequences import encode_batch
from official_stackgpt_reference import official_logits, random_stage2_state_dict
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)

K, NC, NF = 16, 16, 64  # the tiny stage 1 of official_dq_reference: 16 codes, 4x4 coarse, 8x8 fine


def _yaml(n_classes: int = 0, ckpt_path: str = "put your pre-trained DQ-VAE ckpt path") -> dict:
    S = n_classes or 1
    tp = dict(
        vocab_size=K + 2 + S, coarse_position_size=NC + 2 + S, fine_position_size=NF + 2 + S, segment_size=2,
        block_size=80, position_layer=1, content_layer=2, n_head=2, n_embd=32,
        embd_pdrop=0.1, resid_pdrop=0.1, attn_pdrop=0.1,
        content_pad_code=K, coarse_position_pad_code=NC, fine_position_pad_code=NF, activate_pad_ignore=True,
    )
    params = {
        "transformer_config": {"target": "modules.dynamic_modules.stackgpt.StackGPT", "params": tp},
        "first_stage_config": {"target": ref1.FEATURE_TARGET, "params": {**copy.deepcopy(ref1.TINY_PARAMS), "ckpt_path": ckpt_path}},
        "permuter_config": {
            "target": "modules.dynamic_modules.permuter.DualGrainSeperatePermuter",
            "params": dict(coarse_hw=4, fine_hw=8, content_pad_code=K, content_eos_code=K + 1, coarse_position_pad_code=NC,
                           coarse_position_eos_code=NC + 1, fine_position_pad_code=NF, fine_position_eos_code=NF + 1,
                           fine_position_order="row-first"),
        },
        "content_loss_weight": 1.0, "position_loss_weight": 1.0, "activate_sos_for_fine_sequence": True,
    }
    if n_classes:
        target = "models.stage2_dynamic.dqtransformer_class2_entropy.Dualformer"
        params["class_cond_stage_config"] = {
            "target": "modules.dynamic_modules.label_provider.ClassAwareSOSProvider",
            "params": dict(n_classes=n_classes, threshold_content=K + 2, threshold_coarse_position=NC + 2,
                           threshold_fine_position=NF + 2, coarse_seg_sos=0, fine_seg_sos=1),
        }
    else:
        target = "models.stage2_dynamic.dqtransformer_uncond_entropy.Dualformer"
        params["uncond_stage_config"] = {
            "target": "modules.dynamic_modules.label_provider.PositionAwareSOSProvider",
            "params": dict(coarse_sos=K + 2, coarse_pos_sos=NC + 2, fine_sos=K + 2, fine_pos_sos=NF + 2, coarse_seg_sos=0, fine_seg_sos=1),
        }
    return {"model": {"learning_rate": 5e-4, "target": target, "params": params}}


def _write(tmp: Path, cfg: dict, transformer_sd: dict, stage1_sd: dict | None, name: str = "stage2") -> tuple[Path, Path]:
    sd = {f"transformer.{k}": v for k, v in transformer_sd.items()}
    if stage1_sd is not None:
        sd.update({f"first_stage_model.{k}": v for k, v in stage1_sd.items()})
    ckpt, yml = tmp / f"{name}.ckpt", tmp / f"{name}.yml"
    torch.save({"state_dict": sd, "global_step": 1}, ckpt)
    yml.write_text(yaml.safe_dump(cfg))
    return ckpt, yml


def _official_streams(tokens, b: int):
    """Split our single-sample layout into the official coarse / fine streams (no padding between)."""
    pos = tokens.position[b, : tokens.lengths[b]]
    ce = int(np.flatnonzero(pos == NC + 1)[0]) + 1
    parts = []
    for a in (tokens.content, tokens.position, tokens.segment):
        row = torch.from_numpy(a[b, : tokens.lengths[b]])
        parts += [row[:ce], row[ce:]]
    return parts  # coarse_content, fine_content, coarse_position, fine_position, coarse_seg, fine_seg


@pytest.mark.parametrize("n_classes", [0, 5])
def test_import_reproduces_official_logits(tmp_path, n_classes, capsys):
    cfg = _yaml(n_classes)
    tp = cfg["model"]["params"]["transformer_config"]["params"]
    tsd = random_stage2_state_dict(tp, seed=n_classes)
    s1 = ref1.random_official_state_dict(ref1.TINY_PARAMS, with_feature_router=True, seed=1)
    ckpt, yml = _write(tmp_path, cfg, tsd, s1)
    out = tmp_path / "model"
    assert main(["import-official", "--ckpt", str(ckpt), "--config", str(yml), "--out", str(out)]) == 0
    assert "attn.mask" in capsys.readouterr().err
    tr = load_transformer(out)
    vae = load_vae(out)  # both stages in one folder
    assert vae.config.n_codes == K and tr.layout.n_classes == n_classes
    # two samples with the same number of coarse regions: the official batch has no padding between streams
    rng = np.random.default_rng(0)
    grain = np.zeros((2, 16), dtype=np.int64)
    for b in range(2):
        grain[b, rng.choice(16, 6, replace=False)] = 1
    codes = rng.integers(0, K, (2, 8, 8))
    classes = [3, 1] if n_classes else None
    tokens = encode_batch(tr.layout, grain.reshape(2, 4, 4), codes, classes)
    assert tokens.lengths[0] == tokens.lengths[1]
    streams = [torch.stack(x) for x in zip(*(_official_streams(tokens, b) for b in range(2)))]
    ref_p, ref_c = official_logits(tsd, tp, *streams)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    with torch.no_grad():
        got_p, got_c = tr(t(tokens.content), t(tokens.position), t(tokens.segment))
    assert got_p.shape == ref_p.shape and got_c.shape == ref_c.shape
    assert (got_p - ref_p).abs().max() <= 1e-4
    assert (got_c - ref_c).abs().max() <= 1e-4
    # the official loss (targets of the official trainer) equals ours
    cc, fc, cp, fp = streams[:4]
    lc = cp.shape[1]
    ce = torch.nn.functional.cross_entropy
    off_content = ce(ref_c.flatten(0, 1), torch.cat([cc, fc], 1)[:, 1:].flatten(), ignore_index=K)
    off_coarse = ce(ref_p[:, : lc - 1].flatten(0, 1), cp[:, 1:].flatten(), ignore_index=NC)
    off_fine = ce(ref_p[:, lc - 1 :].flatten(0, 1), fp.flatten(), ignore_index=NF)
    with torch.no_grad():
        terms = tr.loss_terms(t(tokens.content), t(tokens.position), t(tokens.segment))
    for ours, theirs in ((terms["content"], off_content), (terms["coarse_position"], off_coarse), (terms["fine_position"], off_fine)):
        assert abs(float(ours) - float(theirs)) <= 1e-4
    cfg_json = json.loads((out / "config.json").read_text())
    assert cfg_json["transformer"]["notes"]["dropped_attn_mask_buffers"] == 3


def test_first_stage_from_yaml_ckpt_path_and_from_vae_folder(tmp_path):
    s1 = ref1.random_official_state_dict(ref1.TINY_PARAMS, with_feature_router=True, seed=2)
    (tmp_path / "weights").mkdir()
    torch.save({"state_dict": s1}, tmp_path / "weights" / "vae.ckpt")
    cfg = _yaml(0, ckpt_path="weights/vae.ckpt")  # relative to the YAML's folder
    tsd = random_stage2_state_dict(cfg["model"]["params"]["transformer_config"]["params"])
    ckpt, yml = _write(tmp_path, cfg, tsd, None)
    assert main(["import-official", "--ckpt", str(ckpt), "--config", str(yml), "--out", str(tmp_path / "a")]) == 0
    vae_a = load_vae(tmp_path / "a")
    # without ckpt_path: the VAE comes from --vae
    cfg2 = _yaml(0)
    ckpt2, yml2 = _write(tmp_path, cfg2, tsd, None, name="nofs")
    rc = main(["import-official", "--ckpt", str(ckpt2), "--config", str(yml2), "--out", str(tmp_path / "b"), "--vae", str(tmp_path / "a")])
    assert rc == 0
    vae_b = load_vae(tmp_path / "b")
    for (k, va), (_, vb) in zip(vae_a.state_dict().items(), vae_b.state_dict().items()):
        assert torch.equal(va, vb), k


def _fails(capsys, args, *needles, out: Path | None = None):
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.startswith("error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    for n in needles:
        assert n in err, err
    if out is not None:
        assert not out.exists()


def test_bad_stage2_inputs(tmp_path, capsys):
    s1 = ref1.random_official_state_dict(ref1.TINY_PARAMS, with_feature_router=True, seed=1)
    good = _yaml(0)
    tsd = random_stage2_state_dict(good["model"]["params"]["transformer_config"]["params"])
    out = tmp_path / "out"
    # YAML vocab contradicts the token layout
    bad = copy.deepcopy(good)
    bad["model"]["params"]["transformer_config"]["params"]["vocab_size"] = K + 5
    ckpt, yml = _write(tmp_path, bad, tsd, s1, "vocab")
    _fails(capsys, ["import-official", "--ckpt", str(ckpt), "--config", str(yml), "--out", str(out)], "vocab_size", "hint:", out=out)
    # checkpoint tensors contradict the YAML's vocab
    wrong = dict(tsd)
    wrong["content_emb.weight"] = torch.zeros(K + 7, 32)
    ckpt, yml = _write(tmp_path, good, wrong, s1, "tensors")
    _fails(capsys, ["import-official", "--ckpt", str(ckpt), "--config", str(yml), "--out", str(out)], "content_emb", "YAML", out=out)
    # no first stage anywhere
    ckpt, yml = _write(tmp_path, good, tsd, None, "nofirst")
    _fails(capsys, ["import-official", "--ckpt", str(ckpt), "--config", str(yml), "--out", str(out)], "--vae", out=out)
    # start-token ids that are not the official layout
    odd = copy.deepcopy(good)
    odd["model"]["params"]["uncond_stage_config"]["params"]["fine_pos_sos"] = NF + 5
    ckpt, yml = _write(tmp_path, odd, tsd, s1, "sos")
    _fails(capsys, ["import-official", "--ckpt", str(ckpt), "--config", str(yml), "--out", str(out)], "fine_pos_sos", out=out)
