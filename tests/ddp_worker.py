"""Run by tests/test_train_ddp.py under torchrun (2 processes, gloo): an uninterrupted run, a run
cut short and resumed, and each rank's final weights written out for comparison."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from dq_edge.train.config import build_config
from dq_edge.train.distributed import init_distributed, shutdown
from dq_edge.train.loop import run_training
from dq_edge.train.runner import build_stage


def run(cfg_dict: dict, info, resume: bool = False, stop_after: int | None = None):
    cfg = build_config(**cfg_dict)
    stage = build_stage(cfg, info)
    run_training(cfg, stage, info, resume=resume, stop_after=stop_after)
    return stage


def checksum(stage) -> list[float]:
    model = stage.vae if hasattr(stage, "vae") else stage.tr
    return [float(t.double().sum()) for t in model.state_dict().values()]


def main() -> None:
    base, report = json.loads(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    info = init_distributed()
    full = run({**base, "out": base["out"] + "/full"}, info)
    cut = {**base, "out": base["out"] + "/cut"}
    run(cut, info, stop_after=3)
    resumed = run(cut, info, resume=True)
    stage2 = {**base, "stage": "transformer", "preset": "tiny", "vae_model": base["out"] + "/full/model", "vae": {},
              "out": base["out"] + "/tr", "steps": 3, "lr": 1e-3, "class_dropout": 0.5}
    tr = run(stage2, info)
    result = {"full": checksum(full), "resumed": checksum(resumed), "transformer": checksum(tr)}
    report.with_name(f"{report.name}.{info.rank}").write_text(json.dumps(result))
    shutdown(info)


if __name__ == "__main__":
    main()
