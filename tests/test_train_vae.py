"""Stage-1 trainer on tiny synthetic data: loss decreases, exact resume, killed saves, config errors,
router modes, perceptual weights, and the `dq-edge train vae` CLI."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from dq_edge.cli.main import main
from dq_edge.errors import CheckpointError, ConfigError, InputError
from dq_edge.models.vae import load_vae
from dq_edge.train import checkpoint as ckpt_mod
from dq_edge.train.config import build_config
from dq_edge.train.log import read_log
from dq_edge.train.runner import train
from dq_edge.train.schedule import lr_at
from error_helpers import raises_line
from train_fixtures import make_images, micro_config, one_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("imgs"))


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_loss_decreases(tmp_path, images):
    cfg = build_config(**micro_config(tmp_path / "run", images, steps=30, gan_start=10_000, log_every=1, checkpoint_every=100))
    folder = train(cfg)
    l1 = [r["l1"] for r in read_log(tmp_path / "run")]
    assert len(l1) == 30
    assert sum(l1[-5:]) / 5 < 0.7 * sum(l1[:5]) / 5
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    summary = json.loads((folder / "config.json").read_text())["training"]["vae"]
    assert summary["steps"] == 30 and summary["router_mode"] == "dynamic" and summary["hardware"]["torch"]
    vae = load_vae(folder)  # the folder loads strictly
    assert vae.config.n_codes == 16


def test_interrupted_run_resumes_bit_for_bit(tmp_path, images):
    over = dict(steps=7, ema_decay=0.9)  # GAN on from step 3, EMA on: every state piece matters
    full = train(build_config(**micro_config(tmp_path / "full", images, **over)))
    cfg = build_config(**micro_config(tmp_path / "cut", images, **over))
    assert train(cfg, stop_after=5) is None  # "killed" after step 5: last checkpoint is step 3
    assert ckpt_mod.latest_checkpoint(tmp_path / "cut").name == "step-0000003"
    resumed = train(cfg, resume=True)
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_full, log_cut = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    assert [r["loss"] for r in log_full] == [r["loss"] for r in log_cut]  # truncated + replayed steps 4-5
    assert "d_loss" in log_full[-1] and "g_loss" in log_full[-1]


def test_failed_save_keeps_previous_checkpoint(tmp_path, images, monkeypatch):
    cfg = build_config(**micro_config(tmp_path / "run", images, steps=6, gan_start=100))
    real_save = ckpt_mod.save_file
    calls = []

    def disk_full(tensors, path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            real_save(dict(list(tensors.items())[:1]), path)  # a partial file, then the disk is full
            raise OSError(28, "No space left on device")
        return real_save(tensors, path, *a, **k)

    monkeypatch.setattr(ckpt_mod, "save_file", disk_full)
    with pytest.raises(OSError):
        train(cfg)
    root = tmp_path / "run" / "checkpoints"
    assert ckpt_mod.latest_checkpoint(tmp_path / "run").name == "step-0000003"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["latest", "step-0000003"]
    monkeypatch.setattr(ckpt_mod, "save_file", real_save)
    (root / ".step-0000009.abc.tmp").mkdir()  # what a SIGKILL mid-save leaves behind
    assert train(cfg, resume=True) is not None
    assert not list(root.glob(".*.tmp"))


def test_resume_and_output_folder_errors(tmp_path, images):
    cfg = build_config(**micro_config(tmp_path / "run", images, steps=3, gan_start=100))
    with raises_line(CheckpointError, "no checkpoint"):
        train(cfg, resume=True)
    train(cfg)
    with raises_line(ConfigError, "not empty.*--resume"):
        train(cfg)
    other = build_config(**micro_config(tmp_path / "run", images, steps=5, gan_start=100, lr=1e-2))
    with raises_line(ConfigError, "different config.*lr"):
        train(other, resume=True)
    shorter = build_config(**micro_config(tmp_path / "run", images, steps=2, gan_start=100))
    with raises_line(ConfigError, "past --steps 2.*--steps 3"):
        train(shorter, resume=True)
    longer = build_config(**micro_config(tmp_path / "run", images, steps=5, gan_start=100))
    assert train(longer, resume=True) is not None  # more steps is a legitimate resume


def test_config_file_flags_and_contradictions(tmp_path, images):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 9\nbatch: 2\nvae: {n_codes: 32}\n")
    cfg = build_config(f, steps=4, data=str(images))
    assert (cfg.steps, cfg.batch, cfg.vae) == (4, 2, {"n_codes": 32})
    assert build_config(None, stage="transformer", vae_model="x").beta1 == 0.9  # stage-2 defaults
    with raises_line(ConfigError, "unknown training config keys: stpes"):
        build_config(None, stpes=3)
    (tmp_path / "bad.yaml").write_text("steps: [1,\n")
    with raises_line(ConfigError, "not valid YAML"):
        build_config(tmp_path / "bad.yaml")
    with raises_line(ConfigError, "router_mode fixed-fine fixes the router"):
        build_config(None, router_mode="fixed-fine", vae={"router": "feature"})
    with raises_line(ConfigError, "--vae-model"):
        build_config(None, stage="transformer")
    with raises_line(ConfigError, "do not fit the VAE config"):
        train(build_config(**micro_config(tmp_path / "r1", images, vae={"no_such_field": 1})))

def test_dataset_that_contradicts_the_model(tmp_path, monkeypatch):
    import numpy as np

    from dq_edge.data.imageset import ImageSet, save_npz

    monkeypatch.setenv("DQ_EDGE_DATA", str(tmp_path / "data"))
    fake = ImageSet(np.zeros((8, 32, 32, 1), np.uint8), np.zeros(8, np.int64), ["a"], "fmnist", "train")
    save_npz(tmp_path / "data" / "fmnist" / "train.npz", fake)  # a 32 px built-in vs the 16 px tiny preset
    with raises_line(InputError, "needs 16x16.*preset that matches"):
        train(build_config(**micro_config(tmp_path / "r", "fmnist")))
    (tmp_path / "data" / "fmnist" / "train.npz").write_bytes(b"PK\x03\x04 cut short")
    with raises_line(InputError, "corrupt.*dq-edge data prepare fmnist"):
        train(build_config(**micro_config(tmp_path / "r", "fmnist")))
    assert not (tmp_path / "r").exists()


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_at(s, 1.0, 10, 2, 0.1) for s in range(10)]
    assert lrs[:2] == [0.5, 1.0] and lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert lr_at(10, 1.0, 10, 2, 0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("mode,ratio", [("fixed-fine", 1.0), ("fixed-coarse", 0.0)])
def test_fixed_length_baselines(tmp_path, images, mode, ratio):
    folder = train(build_config(**micro_config(tmp_path / "run", images, steps=2, router_mode=mode)))
    assert all(r["fine_ratio"] == ratio for r in read_log(tmp_path / "run"))
    vae = load_vae(folder)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert vae.encode(x).grain.float().mean().item() == ratio
    assert vae.config.notes["router_mode"] == mode


class L1Distance(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (torch.nn.functional.avg_pool2d(x, 2) - torch.nn.functional.avg_pool2d(y, 2)).abs().mean(dim=(1, 2, 3))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script/save: how users produce the file
def test_perceptual_loss_only_from_supplied_weights(tmp_path, images):
    path = tmp_path / "perc.pt"
    torch.jit.save(torch.jit.script(L1Distance()), str(path))
    train(build_config(**micro_config(tmp_path / "run", images, steps=2, gan_start=100, perceptual_weights=str(path))))
    assert all("perceptual" in r for r in read_log(tmp_path / "run"))
    summary = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["training"]["vae"]
    assert summary["perceptual_loss"] == str(path)
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with raises_line(CheckpointError, "not a TorchScript file"):
        train(build_config(**micro_config(tmp_path / "run2", images, steps=2, perceptual_weights=str(tmp_path / "junk.pt"))))
    with raises_line(ConfigError, "not found"):
        build_config(perceptual_weights=str(tmp_path / "missing.pt"))


def test_cli_train_vae_and_errors(tmp_path, images, capsys):
    cfgfile = tmp_path / "micro.json"
    cfgfile.write_text(json.dumps({k: v for k, v in micro_config(tmp_path / "x", images).items() if k not in ("out", "data")}))
    args = ["train", "vae", "--config", str(cfgfile), "--data", str(images), "--steps", "2", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    assert "model folder" in capsys.readouterr().out
    assert main(args) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["train", "vae", "--config", str(cfgfile), "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")]) == 1
    err = capsys.readouterr().err
    assert "neither a built-in dataset" in err and "Traceback" not in err
    assert not (tmp_path / "r2").exists()
