"""The training loop shared by both stages.

A stage object owns models, optimizers and the step math; this loop owns everything around it:
data order, LR schedule, checkpoints + exact resume, JSONL log, progress bar, loss curve and the
final model folder. Only rank 0 writes files; every rank reads checkpoints.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from dq_edge.atomic import write_json
from dq_edge.data import BatchOrder
from dq_edge.errors import CheckpointError, ConfigError
from dq_edge.train import checkpoint as ckpt
from dq_edge.train.config import TrainConfig, config_differences
from dq_edge.train.distributed import DistInfo, barrier, gather_objects
from dq_edge.train.log import append_log, plot_curves, truncate_log
from dq_edge.train.schedule import lr_at

CONFIG_NAME = "train_config.json"
MODEL_DIR = "model"


class Stage(Protocol):
    dataset_size: int

    def train_step(self, indices: np.ndarray, step: int, lr: float) -> dict[str, float]: ...
    def state_tensors(self) -> dict[str, torch.Tensor]: ...
    def state_meta(self) -> dict: ...
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None: ...
    def finish(self, folder: Path, summary: dict) -> Path: ...


StepCallback = Callable[[int, dict[str, float]], None]


def check_out_dir(out: Path, resume: bool) -> None:
    if resume:
        if ckpt.latest_checkpoint(out) is None:
            raise CheckpointError(f"--resume: no checkpoint in {out / 'checkpoints'}", "start without --resume, or pass the --out of the run to resume")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"output folder {out} is not empty", "pass --resume to continue that run, or choose a new --out")


def _rng_payload(info: DistInfo) -> tuple[dict[str, torch.Tensor], list]:
    tensors, meta = ckpt.rng_state()
    everyone = gather_objects(info, (tensors["rng.torch"].numpy().tobytes(), meta))
    out = {f"rng.torch.{r}": torch.frombuffer(bytearray(b), dtype=torch.uint8) for r, (b, _) in enumerate(everyone)}
    return out, [m for _, m in everyone]


def _restore(stage: Stage, order: BatchOrder, cfg: TrainConfig, info: DistInfo, out: Path) -> tuple[int, float]:
    path = ckpt.latest_checkpoint(out)
    assert path is not None  # checked by check_out_dir
    tensors, meta = ckpt.load_checkpoint(path)
    diff = config_differences(meta["config"], cfg.to_dict())
    if diff:
        shown = ", ".join(f"{k}: {meta['config'].get(k)!r} -> {cfg.to_dict().get(k)!r}" for k in diff[:6])
        raise ConfigError(f"--resume with a different config ({shown})", f"resume with the checkpoint's settings (see {out / CONFIG_NAME}) or start a new --out")
    if int(meta["step"]) > cfg.steps:
        raise ConfigError(f"the checkpoint is at step {meta['step']}, past --steps {cfg.steps}", f"pass --steps {meta['step']} or more")
    stage.load_state(tensors, meta["stage"])
    order.load_state_dict(meta["data_order"])
    rng_meta = meta["rng"]
    if len(rng_meta) != info.world_size:
        raise ConfigError(f"checkpoint was written by {len(rng_meta)} processes, this run has {info.world_size}", "resume with the same number of processes")
    ckpt.set_rng_state({"rng.torch": tensors[f"rng.torch.{info.rank}"]}, rng_meta[info.rank])
    return int(meta["step"]), float(meta.get("elapsed_s", 0.0))


def _save(stage: Stage, order: BatchOrder, cfg: TrainConfig, info: DistInfo, out: Path, step: int, elapsed: float) -> None:
    rng_tensors, rng_meta = _rng_payload(info)  # collective: every rank takes part
    if info.main:
        tensors = {**stage.state_tensors(), **rng_tensors}
        meta = {"config": cfg.to_dict(), "stage": stage.state_meta(), "data_order": order.state_dict(), "rng": rng_meta, "elapsed_s": elapsed}
        ckpt.save_checkpoint(out, step, tensors, meta, keep=cfg.keep_checkpoints)
    barrier(info)


def hardware() -> dict[str, Any]:
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run_training(cfg: TrainConfig, stage: Stage, info: DistInfo, resume: bool = False,
                 on_step: StepCallback | None = None, stop_after: int | None = None) -> Path | None:
    """Train to cfg.steps. `stop_after` ends the process's work early after that many steps
    (without final save) - the tests use it to simulate a killed run. Returns the model folder."""
    out = Path(cfg.out)
    order = BatchOrder(stage.dataset_size, cfg.batch, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    start, elapsed_before = (_restore(stage, order, cfg, info, out) if resume else (0, 0.0))
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / CONFIG_NAME, cfg.to_dict())
        truncate_log(out, start)
    t0 = time.perf_counter()
    window: list[float] = []
    done = 0
    for step in range(start, cfg.steps):
        lr = lr_at(step, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
        metrics = stage.train_step(order.next_indices(), step, lr)
        window.append(metrics["loss"])
        done += 1
        if info.main and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
            elapsed = time.perf_counter() - t0
            row = {"step": step + 1, "lr": lr, **metrics, "loss_avg": float(np.mean(window)),
                   "images_per_s": done * cfg.batch * info.world_size / max(elapsed, 1e-9), "elapsed_s": elapsed_before + elapsed}
            append_log(out, row)
            window.clear()
        if on_step is not None:
            on_step(step + 1, {"lr": lr, **metrics})
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            _save(stage, order, cfg, info, out, step + 1, elapsed_before + time.perf_counter() - t0)
        if stop_after is not None and done >= stop_after:
            return None
    wall = elapsed_before + time.perf_counter() - t0
    if not info.main:
        barrier(info)
        return None
    plot_curves(out)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()] if (out / "log.jsonl").is_file() else []
    summary = {
        "stage": cfg.stage, "steps": cfg.steps, "batch_per_process": cfg.batch, "processes": info.world_size,
        "images_seen": cfg.steps * cfg.batch * info.world_size, "wall_time_s": round(wall, 1),
        "final_loss_avg": rows[-1]["loss_avg"] if rows else None, "hardware": hardware(),
        "config": cfg.to_dict(),
    }
    folder = stage.finish(out / MODEL_DIR, summary)
    barrier(info)
    return folder
