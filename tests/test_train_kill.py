"""A training process killed with SIGKILL (no cleanup at all) resumes from its last checkpoint and
ends bit-for-bit where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from dq_edge.cli.main import main
from dq_edge.train import checkpoint as ckpt_mod
from train_fixtures import make_images, micro_config, one_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)
STEPS = 24


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    images = make_images(tmp_path / "imgs")
    cfg = {k: v for k, v in micro_config(tmp_path, images, steps=STEPS, checkpoint_every=2, gan_start=5, threads=1).items()
           if k not in ("out", "data", "progress")}
    cfg_file = tmp_path / "micro.json"
    cfg_file.write_text(json.dumps(cfg))
    args = ["train", "vae", "--config", str(cfg_file), "--data", str(images), "--no-progress"]

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dq_edge", *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        latest = ckpt_mod.latest_checkpoint(killed)
        if latest is not None and latest.name >= "step-0000004":
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    step_at_kill = int(ckpt_mod.latest_checkpoint(killed).name.split("-")[1])
    assert 4 <= step_at_kill < STEPS and not (killed / "model").exists()

    assert main([*args, "--out", str(killed), "--resume"]) == 0
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    a = load_file(str(killed / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
