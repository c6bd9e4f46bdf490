"""Stage-2 trainer on tiny synthetic data: token cache, loss decreases, class dropout layout,
matrices-only weight decay, exact resume, a model folder both loaders read, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dq_edge.cli.main import main
from dq_edge.errors import ConfigError
from dq_edge.models.transformer import load_transformer
from dq_edge.models.vae import load_vae
from dq_edge.train.config import build_config
from dq_edge.train.log import read_log
from dq_edge.train.runner import train
from dq_edge.train.transformer_stage import param_groups
from error_helpers import raises_line
from train_fixtures import make_images, micro_config, one_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(labelled image folder, trained micro VAE folder, data cache dir)."""
    root = tmp_path_factory.mktemp("stage2")
    images = make_images(root / "imgs", n=24, classes=3)
    vae_folder = train(build_config(**micro_config(root / "vae", images, steps=3, gan_start=100)))
    return images, vae_folder, root / "cache"


def tr_config(out, images, vae_folder, **over):
    cfg = dict(stage="transformer", preset="tiny", data=str(images), out=str(out), vae_model=str(vae_folder),
               steps=25, batch=8, lr=3e-3, warmup_steps=2, checkpoint_every=10, log_every=1, progress=False)
    cfg.update(over)
    return build_config(**cfg)


def test_transformer_trains_and_writes_a_two_stage_folder(tmp_path, setup, monkeypatch):
    images, vae_folder, cache = setup
    monkeypatch.setenv("DQ_EDGE_DATA", str(cache))
    folder = train(tr_config(tmp_path / "run", images, vae_folder))
    losses = [r["loss"] for r in read_log(tmp_path / "run")]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    tr, vae = load_transformer(folder), load_vae(folder)
    assert tr.layout.n_classes == 3 and tr.layout.null_class  # class dropout -> null class token
    assert tr.layout.n_codes == vae.config.n_codes
    ref = load_file(str(vae_folder / "model.safetensors"))
    mine = load_file(str(folder / "model.safetensors"))
    assert all(torch.equal(ref[k], mine[k]) for k in ref if k.startswith("vae."))  # the VAE is copied unchanged
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["training"]["transformer"]["steps"] == 25 and "vae" in cfg["training"]
    assert cfg["data"]["class_names"] == ["class0", "class1", "class2"]
    assert list(cache.glob("token-cache/*.npz"))  # the dataset was encoded once and cached


def test_weight_decay_only_on_linear_matrices(setup):
    from dq_edge.models.transformer import build_transformer
    from dq_edge.tokens import TokenLayout

    tr = build_transformer("tiny", TokenLayout(16, (2, 2), (4, 4)))
    decay, no_decay = param_groups(tr, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"])
    no_decay_ids = {id(p) for p in no_decay["params"]}
    assert id(tr.pos_emb) in no_decay_ids and id(tr.content_emb.weight) in no_decay_ids
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(tr.parameters()))


def test_transformer_resume_is_exact(tmp_path, setup, monkeypatch):
    images, vae_folder, cache = setup
    monkeypatch.setenv("DQ_EDGE_DATA", str(cache))
    over = dict(steps=6, checkpoint_every=2, ema_decay=0.5)
    full = train(tr_config(tmp_path / "full", images, vae_folder, **over))
    cut = tr_config(tmp_path / "cut", images, vae_folder, **over)
    train(cut, stop_after=3)
    resumed = train(cut, resume=True)
    a, b = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stage2_errors(tmp_path, setup, capsys, monkeypatch):
    images, vae_folder, cache = setup
    monkeypatch.setenv("DQ_EDGE_DATA", str(cache))
    with raises_line(ConfigError, "do not fit the preset"):
        train(tr_config(tmp_path / "r1", images, vae_folder, transformer={"nonsense": 1}))
    assert main(["train", "transformer", "--data", str(images), "--out", str(tmp_path / "r2")]) == 1
    assert "--vae-model" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert main(["train", "transformer", "--vae-model", str(tmp_path / "plain"), "--data", str(images), "--out", str(tmp_path / "r3")]) == 1
    assert "not a dq-edge model folder" in capsys.readouterr().err
