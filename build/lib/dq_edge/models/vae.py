"""DQ-VAE: dual-grain encoder + router (DGC) + shared codebook + positional decoder.

Inference is split the way the graphs are exported:
    features(x)                 -> h_coarse [B,Cz,Hc,Wc], h_fine [B,Cz,Hf,Wf]     ("encoder")
    dgc(h_coarse, h_fine, x)    -> grain [B,Hc,Wc] int64, codes [B,Hf,Wf] int64    ("dgc")
    decode_codes(codes)         -> image [B,3,H,W] unclamped                        ("decoder")
Merge order follows the official model: merge the two feature maps first, then quant_conv.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dq_edge.errors import CheckpointError, InputError
from dq_edge.models.decoder import Decoder
from dq_edge.models.encoder import DualGrainEncoder
from dq_edge.models.quantizer import VectorQuantizer
from dq_edge.models.routers import EntropyRouter, budget_loss, build_router
from dq_edge.models.vae_config import VAEConfig, get_preset
from dq_edge.tokens import TokenLayout

COARSE_CELL_WEIGHT = 0.25  # a coarse code stands for 4 cells: count each cell 1/4 in the VQ loss


@dataclass
class EncodeResult:
    grain: torch.Tensor  # [B, Hc, Wc] int64, 1 = fine
    codes: torch.Tensor  # [B, Hf, Wf] int64; a coarse region's 4 cells carry its code


@dataclass
class VAEOutput:
    recon: torch.Tensor  # [B, 3, H, W] unclamped
    codebook_loss: torch.Tensor  # codebook + beta * commitment, coarse cells weighted 1/4
    budget_loss: torch.Tensor  # 0 for the entropy router
    fine_ratio: torch.Tensor  # share of fine regions in the batch
    grain: torch.Tensor  # [B, Hc, Wc] int64
    codes: torch.Tensor  # [B, Hf, Wf] int64
    gate: torch.Tensor  # [B, Hc, Wc, 2] one-hot (straight-through in training)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Repeat every cell on a 2x2 block: [..., H, W] -> [..., 2H, 2W] (export-friendly)."""
    *lead, h, w = x.shape
    x = x.reshape(*lead, h, 1, w, 1).expand(*lead, h, 2, w, 2)
    return x.reshape(*lead, 2 * h, 2 * w)


class DQVAE(nn.Module):
    def __init__(self, cfg: VAEConfig, thresholds: dict[str, float] | None = None):
        super().__init__()
        self.config = cfg.validate()
        self.encoder = DualGrainEncoder(cfg)
        self.router = build_router(cfg, thresholds)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.quantize = VectorQuantizer(
            cfg.n_codes, cfg.embed_dim, cfg.commitment_beta, cfg.ema_decay, cfg.ema_eps, cfg.restart_unused_codes
        )
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)
        self.decoder = Decoder(cfg)

    # ----- public sizes -----
    @property
    def feature_channels(self) -> int:
        return self.config.z_channels

    def token_layout(self, n_classes: int = 0, null_class: bool = False) -> TokenLayout:
        c = self.config
        return TokenLayout(c.n_codes, c.coarse_hw, c.fine_hw, n_classes=n_classes, null_class=null_class)

    def last_layer_weight(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    @property
    def thresholds(self) -> dict[str, float] | None:
        return self.router.thresholds if isinstance(self.router, EntropyRouter) else None

    # ----- inference graphs -----
    def check_image(self, x: torch.Tensor) -> None:
        s = self.config.image_size
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != s or x.shape[3] != s:
            raise InputError(
                f"expected images [B,3,{s},{s}], got {list(x.shape)}",
                f"this model takes {s}x{s} RGB images in [-1, 1]; resize them first",
            )

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def _merge(self, h_coarse: torch.Tensor, h_fine: torch.Tensor, grain: torch.Tensor) -> torch.Tensor:
        fine_cells = upsample2x(grain).unsqueeze(1)  # [B, 1, Hf, Wf]
        return torch.where(fine_cells == 0, upsample2x(h_coarse), h_fine)

    def dgc(
        self, h_coarse: torch.Tensor, h_fine: torch.Tensor, image: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Router (argmax) + merge + quant_conv + nearest code -> (grain, codes), both int64."""
        grain = self.router(h_coarse, h_fine, image).argmax(dim=-1)  # [B, Hc, Wc]
        z = self.quant_conv(self._merge(h_coarse, h_fine, grain))
        return grain, self.quantize.codes(z)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> EncodeResult:
        self.check_image(x)
        h_coarse, h_fine = self.features(x)
        grain, codes = self.dgc(h_coarse, h_fine, x)
        return EncodeResult(grain=grain, codes=codes)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, Hf, Wf] int64 -> image [B, 3, H, W] (unclamped)."""
        return self.decoder(self.post_quant_conv(self.quantize.embed(codes)))

    # ----- training -----
    def _gate(self, h_coarse: torch.Tensor, h_fine: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits = self.router(h_coarse, h_fine, x)
        if self.training and self.config.router == "feature" and self.config.update_router:
            return F.gumbel_softmax(logits, dim=-1, hard=True)  # one-hot values, soft gradients
        return F.one_hot(logits.argmax(dim=-1), 2).to(h_coarse.dtype)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        self.check_image(x)
        h_coarse, h_fine = self.features(x)
        gate = self._gate(h_coarse, h_fine, x)  # [B, Hc, Wc, 2]
        grain = gate.argmax(dim=-1)
        merged = self._merge(h_coarse, h_fine, grain)
        if self.training and self.config.router == "feature" and self.config.update_router:
            # multiply by the chosen gate value (1.0) so gradients reach the router
            chosen = gate.max(dim=-1).values  # [B, Hc, Wc]
            merged = merged * upsample2x(chosen).unsqueeze(1)
        cell_weight = torch.where(upsample2x(grain).unsqueeze(1) == 0, COARSE_CELL_WEIGHT, 1.0).to(merged.dtype)
        quant, codebook_loss, codes = self.quantize(self.quant_conv(merged), cell_weight)
        recon = self.decoder(self.post_quant_conv(quant))
        if self.config.router == "feature" and self.config.budget_gamma > 0:
            budget = budget_loss(gate, self.config)
        else:
            budget = torch.zeros((), device=x.device)
        return VAEOutput(
            recon=recon, codebook_loss=codebook_loss, budget_loss=budget,
            fine_ratio=grain.float().mean(), grain=grain, codes=codes, gate=gate,
        )


# ----- construction, folders -----
def build_vae(config: str | VAEConfig, thresholds: dict[str, float] | None = None, seed: int | None = None) -> DQVAE:
    cfg = get_preset(config) if isinstance(config, str) else config
    if seed is not None:
        torch.manual_seed(seed)
    return DQVAE(cfg, thresholds)


def load_vae(folder: str | Path) -> DQVAE:
    """Model folder -> DQVAE in eval mode, float32, strict weights."""
    from dq_edge.models.folder import THRESHOLDS_NAME, load_checked_tensors, read_config
    from dq_edge.models.routers import load_thresholds

    folder = Path(folder)
    cfg_all = read_config(folder)
    if not cfg_all.get("vae"):
        raise CheckpointError(f"{folder} has no `vae` section", "re-create it with `dq-edge train` or `dq-edge import-official`")
    cfg = VAEConfig.from_dict(cfg_all["vae"])
    thresholds = None
    if cfg.router == "entropy":
        thresholds = load_thresholds(folder / THRESHOLDS_NAME)
    tensors = load_checked_tensors(folder, "vae", lambda: DQVAE(cfg), "VAE")  # header vs config before allocating
    vae = DQVAE(cfg)
    load_state_strict(vae, tensors, str(folder))
    if thresholds is not None:
        vae.router.set_thresholds(thresholds, str(folder / THRESHOLDS_NAME))
    return vae.float().eval()


def load_state_strict(vae: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    expected = vae.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unknown = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(expected[k].shape) != tuple(tensors[k].shape))
    if missing or unknown or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unknown", unknown), ("wrong shape", wrong)):
            if keys:
                shown = ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise CheckpointError(
            f"{source}: weights do not match the VAE config ({'; '.join(parts)})",
            "the weights and config.json come from different models; re-create the folder",
        )
    vae.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)


def vae_folder_parts(vae: DQVAE) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, bytes]]:
    """(config section, prefixed tensors, extra files) for folder.write_model_folder."""
    from dq_edge.models.folder import THRESHOLDS_NAME

    tensors = {f"vae.{k}": v.detach().float().cpu() for k, v in vae.state_dict().items()}
    extra = {}
    if vae.thresholds is not None:
        extra[THRESHOLDS_NAME] = (json.dumps(vae.thresholds, indent=1) + "\n").encode()
    return vae.config.to_dict(), tensors, extra


def save_vae(vae: DQVAE, folder: str | Path, extra_config: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a model folder holding this VAE (config `vae` + `tokens` + extra sections)."""
    from dq_edge.models.folder import write_model_folder

    if vae.config.router == "entropy" and vae.thresholds is None:
        raise CheckpointError("cannot save an entropy-router VAE without thresholds", "set them with vae.router.set_thresholds()")
    section, tensors, extra = vae_folder_parts(vae)
    config = {"vae": section, "tokens": vae.token_layout().to_dict(), **(extra_config or {})}
    return write_model_folder(folder, config, tensors, extra, overwrite=overwrite)
