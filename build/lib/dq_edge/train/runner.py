"""Entry point of a training run (single process or one rank under torchrun)."""

from __future__ import annotations

from pathlib import Path

from dq_edge.data import load_dataset
from dq_edge.train.config import TrainConfig
from dq_edge.errors import DQEdgeError
from dq_edge.train.distributed import DistInfo, broadcast_object, init_distributed
from dq_edge.train.loop import StepCallback, check_out_dir, run_training


def build_stage(cfg: TrainConfig, info: DistInfo):
    if cfg.stage == "vae":
        from dq_edge.models.vae_config import get_preset
        from dq_edge.train.vae_stage import VAEStage

        data = load_dataset(cfg.data, cfg.split, image_size=get_preset(cfg.preset).image_size)
        return VAEStage(cfg, info, data, cfg.data)
    from dq_edge.models.folder import read_config
    from dq_edge.train.transformer_stage import TransformerStage

    size = (read_config(cfg.vae_model).get("vae") or {}).get("image_size")
    data = load_dataset(cfg.data, cfg.split, image_size=size)
    return TransformerStage(cfg, info, data, cfg.data)


def train(cfg: TrainConfig, resume: bool = False, on_step: StepCallback | None = None,
          stop_after: int | None = None, info: DistInfo | None = None) -> Path | None:
    info = info or init_distributed()
    if cfg.threads > 0:
        import torch

        torch.set_num_threads(cfg.threads)
    problem = None
    if info.main:
        try:
            check_out_dir(Path(cfg.out), resume)
        except DQEdgeError as exc:
            problem = (type(exc), exc.message, exc.hint)
    problem = broadcast_object(info, problem)  # every rank stops, none waits at a barrier forever
    if problem is not None:
        kind, message, hint = problem
        raise kind(message, hint)
    stage = build_stage(cfg, info)
    return run_training(cfg, stage, info, resume=resume, on_step=on_step if info.main else None, stop_after=stop_after)
