"""Stage 2: DQ-Transformer on token sequences of the dataset encoded once by the trained VAE.

AdamW with weight decay on the Linear weight matrices only (embedding tables, position table,
LayerNorms and biases are not decayed, as in minGPT); class dropout replaces the class token by
the null class for a share of samples, which classifier-free guidance needs at sampling time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dq_edge.atomic import atomic_path
from dq_edge.data import ImageSet, iterate_in_order
from dq_edge.data.cache import data_root
from dq_edge.errors import ConfigError
from dq_edge.models.folder import THRESHOLDS_NAME, model_hash, read_config, read_tensors, write_model_folder
from dq_edge.models.transformer import build_transformer, transformer_state
from dq_edge.models.vae import load_vae
from dq_edge.sequences import encode_batch
from dq_edge.train.checkpoint import load_optimizer_state, optimizer_state, prefixed, unprefixed
from dq_edge.train.common import clip_and_step, data_section, set_lr, wrap_ddp
from dq_edge.train.config import TrainConfig
from dq_edge.train.distributed import DistInfo, barrier
from dq_edge.train.ema import WeightEMA

ENCODE_BATCH = 64


def token_cache_path(vae_folder: Path, data: ImageSet, data_spec: str) -> Path:
    key = json.dumps({"model": model_hash(vae_folder), "data": data_spec, "split": data.split, "n": len(data)}, sort_keys=True)
    return data_root() / "token-cache" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def encode_dataset(vae_folder: Path, data: ImageSet, data_spec: str, info: DistInfo) -> tuple[np.ndarray, np.ndarray]:
    """(grain [N,Hc,Wc] uint8, codes [N,Hf,Wf] int32), computed once per (VAE weights, dataset) and cached."""
    path = token_cache_path(vae_folder, data, data_spec)
    if info.main and not path.is_file():
        vae = load_vae(vae_folder)
        grains, codes = [], []
        with torch.no_grad():
            for b in iterate_in_order(data, ENCODE_BATCH):
                enc = vae.encode(torch.from_numpy(b.images))
                grains.append(enc.grain.numpy().astype(np.uint8))
                codes.append(enc.codes.numpy().astype(np.int32))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, grain=np.concatenate(grains), codes=np.concatenate(codes))
    barrier(info)
    with np.load(path, allow_pickle=False) as z:
        return z["grain"], z["codes"]


class LossModule(nn.Module):
    """DDP hooks only run through forward(): expose the transformer's loss as a forward."""

    def __init__(self, tr: nn.Module):
        super().__init__()
        self.tr = tr

    def forward(self, content, position, segment) -> dict[str, torch.Tensor]:
        return self.tr.loss_terms(content, position, segment)


def param_groups(tr: nn.Module, weight_decay: float) -> list[dict]:
    decay = {id(m.weight) for m in tr.modules() if isinstance(m, nn.Linear)}
    params = list(tr.parameters())
    return [
        {"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
    ]


class TransformerStage:
    def __init__(self, cfg: TrainConfig, info: DistInfo, data: ImageSet, data_spec: str):
        self.cfg, self.info, self.data, self.data_spec = cfg, info, data, data_spec
        self.vae_folder = Path(cfg.vae_model)
        vae_cfg = read_config(self.vae_folder)
        if not vae_cfg.get("vae"):
            raise ConfigError(f"{self.vae_folder} holds no VAE", "pass the model folder written by `dq-edge train vae`")
        self.grain, self.codes = encode_dataset(self.vae_folder, data, data_spec, info)
        self.dataset_size = len(data)
        n_classes = data.n_classes if (cfg.conditional and data.labels is not None) else 0
        self.labels = data.labels if n_classes else None
        vae = load_vae(self.vae_folder)
        self.layout = vae.token_layout(n_classes=n_classes, null_class=n_classes > 0 and cfg.class_dropout > 0)
        torch.manual_seed(cfg.seed)
        try:
            self.tr = build_transformer(cfg.preset, self.layout, **cfg.transformer).train()
        except TypeError as exc:
            raise ConfigError(f"`transformer` overrides do not fit the preset: {exc}", "use TransformerConfig field names") from exc
        self.ema = WeightEMA(self.tr, cfg.ema_decay) if cfg.ema_decay > 0 else None
        torch.manual_seed(cfg.seed + 7919 * info.rank)
        self.loss_ddp = wrap_ddp(LossModule(self.tr), info)
        self.opt = torch.optim.AdamW(param_groups(self.tr, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))

    def _classes(self, indices: np.ndarray) -> np.ndarray | None:
        if self.labels is None:
            return None
        classes = self.labels[indices].copy()
        if self.layout.null_class_id is not None:
            drop = (torch.rand(len(indices)) < self.cfg.class_dropout).numpy()  # torch RNG: saved in checkpoints
            classes[drop] = self.layout.null_class_id
        return classes

    def train_step(self, indices: np.ndarray, step: int, lr: float) -> dict[str, float]:
        tokens = encode_batch(self.layout, self.grain[indices], self.codes[indices], self._classes(indices))
        content, position, segment = (torch.from_numpy(a) for a in (tokens.content, tokens.position, tokens.segment))
        set_lr(self.opt, lr)
        terms = self.loss_ddp(content, position, segment)
        self.opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = clip_and_step(self.opt, list(self.tr.parameters()), self.cfg.grad_clip)
        if self.ema is not None:
            self.ema.update(self.tr)
        return {"loss": float(terms["loss"].detach()), "content": float(terms["content"].detach()), "position": float(terms["position"].detach()),
                "tokens_per_image": float(tokens.lengths.mean()), "grad_norm": grad_norm}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        t = {**prefixed("tr", self.tr.state_dict()), **optimizer_state("opt", self.opt)[0]}
        if self.ema is not None:
            t.update(prefixed("ema", self.ema.state_dict()))
        return t

    def state_meta(self) -> dict:
        return {"opt": optimizer_state("opt", self.opt)[1]}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.tr.load_state_dict(unprefixed("tr", tensors))
        load_optimizer_state(self.opt, "opt", tensors, meta["opt"])
        if self.ema is not None:
            self.ema.load_state_dict(unprefixed("ema", tensors))

    def finish(self, folder: Path, summary: dict) -> Path:
        """One folder with both stages: the VAE copied from --vae-model plus the new transformer."""
        tr = (self.ema.model if self.ema is not None else self.tr).eval()
        vae_cfg = read_config(self.vae_folder)
        section, tr_tensors = transformer_state(tr)
        tensors = {**prefixed("vae", read_tensors(self.vae_folder, "vae")), **prefixed("transformer", tr_tensors)}
        extra = {}
        if (self.vae_folder / THRESHOLDS_NAME).is_file():
            extra[THRESHOLDS_NAME] = (self.vae_folder / THRESHOLDS_NAME).read_bytes()
        summary = {**summary, "weights": "EMA" if self.ema else "last step", "vae_model": str(self.vae_folder),
                   "vae_model_sha256": model_hash(self.vae_folder), "class_dropout": self.cfg.class_dropout}
        training = {**(vae_cfg.get("training") or {}), "transformer": summary}
        config = {"vae": vae_cfg["vae"], "transformer": section, "tokens": self.layout.to_dict(),
                  "data": data_section(self.data, self.data_spec), "training": training}
        return write_model_folder(folder, config, tensors, extra, overwrite=True)
