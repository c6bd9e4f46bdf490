"""DDP with 2 CPU processes on gloo through torchrun: replicas stay in sync (stage 1 and stage 2),
and a run cut short resumes exactly (every rank's RNG state is checkpointed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from train_fixtures import make_images, micro_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_sync_and_exact_resume(tmp_path):
    images = make_images(tmp_path / "imgs", n=32, classes=2)
    cfg = micro_config(tmp_path / "runs", images, steps=5, checkpoint_every=2, gan_start=2, batch=4)
    cfg["out"] = str(tmp_path / "runs")
    report = tmp_path / "report.json"
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent), "DQ_EDGE_DATA": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(worker), json.dumps(cfg), str(report)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads(report.with_name(f"report.json.{r}").read_text()) for r in (0, 1))
    assert r0["full"] == r1["full"]  # gradients all-reduced: both replicas hold the same weights
    assert r0["resumed"] == r0["full"] and r1["resumed"] == r1["full"]  # exact resume under DDP
    assert r0["transformer"] == r1["transformer"]  # stage 2 under DDP too
    assert (tmp_path / "runs" / "tr" / "model" / "config.json").is_file()
    model = tmp_path / "runs" / "full" / "model"
    summary = json.loads((model / "config.json").read_text())["training"]["vae"]
    assert summary["processes"] == 2 and summary["images_seen"] == 5 * 4 * 2
    last = tmp_path / "runs" / "cut" / "checkpoints"
    latest = last / (last / "latest").read_text().strip()
    tensors = load_file(str(latest / "state.safetensors"))
    assert {"rng.torch.0", "rng.torch.1"} <= tensors.keys()
    assert not tensors["rng.torch.0"].equal(tensors["rng.torch.1"])  # per-rank noise streams
