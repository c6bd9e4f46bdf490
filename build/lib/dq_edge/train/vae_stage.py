"""Stage 1: DQ-VAE with L1 (+ user perceptual) + PatchGAN hinge (adaptive weight, start step) +
codebook/commitment + budget. `router_mode` builds the fixed-length baselines with the same
encoder, codebook and decoder: every region fine, or every region coarse."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dq_edge.data import ImageSet, to_float
from dq_edge.errors import ConfigError
from dq_edge.models.vae import build_vae, save_vae
from dq_edge.models.vae_config import VAEConfig, get_preset
from dq_edge.train.checkpoint import load_optimizer_state, optimizer_state, prefixed, unprefixed
from dq_edge.train.common import clip_and_step, data_section, set_lr, wrap_ddp
from dq_edge.train.config import TrainConfig
from dq_edge.train.discriminator import PatchDiscriminator, adaptive_weight, hinge_d_loss
from dq_edge.train.distributed import DistInfo
from dq_edge.train.ema import WeightEMA
from dq_edge.train.perceptual import load_perceptual

# A fixed grain is an entropy router whose threshold every region passes (fine) or none does
# (coarse): it needs no new model code, saves/loads/exports like any entropy model, and its
# config says exactly what it is. Entropies are >= 0 and bounded by log(32 bins) < 4.
FIXED_THRESHOLD = 1.0e6
FIXED_ROUTERS = {
    "fixed-fine": (1.0, -FIXED_THRESHOLD),
    "fixed-coarse": (0.0, FIXED_THRESHOLD),
}


def vae_config_for(cfg: TrainConfig) -> tuple[VAEConfig, dict[str, float] | None]:
    base = get_preset(cfg.preset)
    try:
        vcfg = replace(base, **cfg.vae).validate() if cfg.vae else base
    except TypeError as exc:
        raise ConfigError(f"`vae` overrides do not fit the VAE config: {exc}", "use field names of VAEConfig") from exc
    if vcfg.router == "entropy" and cfg.router_mode == "dynamic":
        raise ConfigError(
            "training an entropy-router VAE needs dataset thresholds, which `dq-edge train` does not compute",
            "use a feature-router preset, or --router-mode fixed-fine|fixed-coarse",
        )
    if cfg.router_mode == "dynamic":
        return vcfg, None
    ratio, threshold = FIXED_ROUTERS[cfg.router_mode]
    vcfg = vcfg.with_(
        router="entropy", update_router=False, budget_gamma=0.0, target_fine_ratio=ratio,
        notes={**vcfg.notes, "router_mode": cfg.router_mode,
               "fixed_grain": "entropy router with a constant threshold: every region takes the same grain"},
    )
    return vcfg, {vcfg.threshold_key: threshold}


@torch.no_grad()
def sync_codebooks(model: torch.nn.Module) -> None:
    """Under DDP each rank updated its codebook EMA from its own batch. The codebook is not
    trained by gradients (DDP only syncs gradients and broadcasts buffers), so average the EMA
    statistics over ranks - the EMA of the global batch - and rebuild the vectors from them with
    the quantizer's Laplace-smoothed normalisation (dq_edge/models/quantizer.py)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    for m in model.modules():
        if not all(hasattr(m, a) for a in ("cluster_size_ema", "embed_ema", "weight", "n_codes", "eps")):
            continue
        for buf in (m.cluster_size_ema, m.embed_ema):
            dist.all_reduce(buf)
            buf.div_(world)
        total = m.cluster_size_ema.sum()
        size = total * (m.cluster_size_ema + m.eps) / (total + m.n_codes * m.eps)
        m.weight[:-1, :] = m.embed_ema / size.reshape(-1, 1)


class VAEStage:
    def __init__(self, cfg: TrainConfig, info: DistInfo, data: ImageSet, data_spec: str):
        self.cfg, self.info, self.data, self.data_spec = cfg, info, data, data_spec
        self.dataset_size = len(data)
        vcfg, thresholds = vae_config_for(cfg)
        if vcfg.image_size != data.image_size:
            raise ConfigError(
                f"the VAE takes {vcfg.image_size} px images, dataset {data_spec} has {data.image_size} px",
                "pick the preset that matches the dataset (emoji64 -> 64 px, fmnist32 -> 32 px)",
            )
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.vae = build_vae(vcfg, thresholds=thresholds).train()
        self.disc = PatchDiscriminator(width=cfg.disc_width, layers=cfg.disc_layers).train()
        self.perceptual = load_perceptual(cfg.perceptual_weights)
        self.ema = WeightEMA(self.vae, cfg.ema_decay) if cfg.ema_decay > 0 else None
        torch.manual_seed(cfg.seed + 7919 * info.rank)  # different Gumbel / restart noise per rank
        self.vae_ddp = wrap_ddp(self.vae, info)
        self.disc_ddp = wrap_ddp(self.disc, info)
        betas = (cfg.beta1, cfg.beta2)
        self.opt = torch.optim.Adam(self.vae.parameters(), lr=cfg.lr, betas=betas)
        self.dopt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=betas)

    def train_step(self, indices: np.ndarray, step: int, lr: float) -> dict[str, float]:
        cfg = self.cfg
        x = torch.from_numpy(to_float(self.data.images[indices]))
        set_lr(self.opt, lr)
        set_lr(self.dopt, lr)
        out = self.vae_ddp(x)
        rec = cfg.l1_weight * (x - out.recon).abs().mean()
        metrics = {"l1": float((x - out.recon.detach()).abs().mean())}
        if self.perceptual is not None:
            p = self.perceptual(out.recon, x)
            rec = rec + cfg.perceptual_weight * p
            metrics["perceptual"] = float(p.detach())
        loss = rec + cfg.codebook_weight * out.codebook_loss + out.budget_loss
        gan_on = step >= cfg.gan_start and cfg.gan_weight > 0
        if gan_on:
            self.disc.requires_grad_(False)  # generator pass: no discriminator gradients
            g_loss = -self.disc(out.recon).mean()
            self.disc.requires_grad_(True)
            weight = adaptive_weight(rec, g_loss, self.vae.last_layer_weight())
            loss = loss + cfg.gan_weight * weight * g_loss
            metrics.update(g_loss=float(g_loss.detach()), gan_adaptive_weight=float(weight))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        metrics["grad_norm"] = clip_and_step(self.opt, list(self.vae.parameters()), cfg.grad_clip)
        if self.info.enabled:
            sync_codebooks(self.vae)
        if self.ema is not None:
            self.ema.update(self.vae)
        if gan_on:
            # real and fake in one forward: one DDP forward per backward
            logits = self.disc_ddp(torch.cat([x, out.recon.detach()]))
            real, fake = logits.chunk(2)
            d_loss = hinge_d_loss(real, fake)
            self.dopt.zero_grad(set_to_none=True)
            d_loss.backward()
            clip_and_step(self.dopt, list(self.disc.parameters()), cfg.grad_clip)
            metrics["d_loss"] = float(d_loss.detach())
        metrics.update(
            loss=float(loss.detach()), codebook=float(out.codebook_loss.detach()), budget=float(out.budget_loss.detach()),
            fine_ratio=float(out.fine_ratio),
        )
        return metrics

    # ----- checkpoint state -----
    def state_tensors(self) -> dict[str, torch.Tensor]:
        t = {**prefixed("vae", self.vae.state_dict()), **prefixed("disc", self.disc.state_dict())}
        for name, opt in (("opt", self.opt), ("dopt", self.dopt)):
            t.update(optimizer_state(name, opt)[0])
        if self.ema is not None:
            t.update(prefixed("ema", self.ema.state_dict()))
        return t

    def state_meta(self) -> dict:
        return {name: optimizer_state(name, opt)[1] for name, opt in (("opt", self.opt), ("dopt", self.dopt))}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.vae.load_state_dict(unprefixed("vae", tensors))
        self.disc.load_state_dict(unprefixed("disc", tensors))
        for name, opt in (("opt", self.opt), ("dopt", self.dopt)):
            load_optimizer_state(opt, name, tensors, meta[name])
        if self.ema is not None:
            self.ema.load_state_dict(unprefixed("ema", tensors))

    def final_model(self):
        return (self.ema.model if self.ema is not None else self.vae).eval()

    def finish(self, folder: Path, summary: dict) -> Path:
        summary = {**summary, "router_mode": self.cfg.router_mode, "weights": "EMA" if self.ema else "last step",
                   "perceptual_loss": self.cfg.perceptual_weights or "none"}
        return save_vae(self.final_model(), folder, extra_config={"training": {"vae": summary}, "data": data_section(self.data, self.data_spec)}, overwrite=True)
