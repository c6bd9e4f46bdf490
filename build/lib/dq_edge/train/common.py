"""Small pieces both stages use: DDP wrapping, LR setting, clipping, dataset section of config.json."""

from __future__ import annotations

import torch
from torch import nn

from dq_edge.data import ImageSet
from dq_edge.train.distributed import DistInfo


def wrap_ddp(module: nn.Module, info: DistInfo) -> nn.Module:
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.local_rank] if torch.cuda.is_available() else None
    return DistributedDataParallel(module, device_ids=device_ids)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def clip_and_step(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the global grad norm (0 = off), step; returns the pre-clip norm for the log."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        norm = torch.zeros(())
    elif max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(grads, max_norm)
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in grads]))
    opt.step()
    return float(norm)


def data_section(data: ImageSet, spec: str) -> dict:
    return {
        "dataset": spec,
        "split": data.split,
        "num_images": len(data),
        "image_size": data.image_size,
        "class_names": data.class_names if data.labels is not None else [],
        "preprocessing": data.meta.get("preprocessing", "RGB (RGBA composited on white), scaled to [-1, 1]"),
        "source": data.meta.get("source"),
        "license": data.meta.get("license"),
    }
