"""Dynamic grained coding (DGC) routers and the budget loss.

Both routers return per-coarse-region logits [B, Hc, Wc, 2] (index 0 = coarse, 1 = fine);
in eval the grain is their argmax (ties pick coarse).
- FeatureRouter: GroupNorm both feature maps, 2x2 average-pool the fine map onto the coarse
  grid, concatenate and score with a small MLP.
- EntropyRouter: no parameters. Shannon entropy of a Gaussian-smoothed grayscale histogram
  of each coarse region's pixels; fine where the entropy exceeds a dataset percentile
  threshold. Thresholds JSON: {"1": t1, ..., "99": t99}, key = percentile of regions at or
  below the threshold; the target fine ratio r picks key int(100 - 100 r).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from dq_edge.errors import ConfigError
from dq_edge.models.vae_config import VAEConfig

N_BINS = 32
ENTROPY_EPS = 1e-40  # float32 subnormal; keeps log() finite for empty bins (as the official code)
GRAY = (0.2989, 0.5870, 0.1140)


class FeatureRouter(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        c = cfg.z_channels
        if cfg.router_norm == "none":
            self.feature_norm_fine, self.feature_norm_coarse = nn.Identity(), nn.Identity()
        elif cfg.router_norm.startswith("group-"):
            groups = int(cfg.router_norm.split("-")[-1])
            self.feature_norm_fine = nn.GroupNorm(groups, c, eps=1e-6, affine=True)
            self.feature_norm_coarse = nn.GroupNorm(groups, c, eps=1e-6, affine=True)
        else:
            raise ConfigError(f"unknown router_norm {cfg.router_norm!r}", "use 'none' or 'group-N'")
        if cfg.router_gate == "1layer-fc":
            self.gate: nn.Module = nn.Linear(2 * c, 2)
        elif cfg.router_gate == "2layer-fc-SiLu":
            self.gate = nn.Sequential(nn.Linear(2 * c, 2 * c), nn.SiLU(), nn.Linear(2 * c, 2))
        else:
            raise ConfigError(f"unknown router_gate {cfg.router_gate!r}", "use '1layer-fc' or '2layer-fc-SiLu'")
        self.pool = nn.AvgPool2d(2, 2)

    def forward(self, h_coarse: torch.Tensor, h_fine: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        pooled_fine = self.pool(self.feature_norm_fine(h_fine))  # [B, C, Hc, Wc]
        both = torch.cat([self.feature_norm_coarse(h_coarse), pooled_fine], dim=1).permute(0, 2, 3, 1)  # [B,Hc,Wc,2C]
        return self.gate(both)  # [B, Hc, Wc, 2]


def entropy_bins(kind: str) -> torch.Tensor:
    # "legacy": the released checkpoint and its thresholds were made with [0, 1] bins even
    # though images are in [-1, 1]; the official code later switched to [-1, 1] ("current").
    lo = 0.0 if kind == "legacy" else -1.0
    return torch.linspace(lo, 1.0, N_BINS)


def region_entropy(image: torch.Tensor, patch: int, bins: torch.Tensor, sigma: float) -> torch.Tensor:
    """image [B,3,H,W] in [-1,1] -> entropy [B, H/patch, W/patch] of each patch's soft histogram."""
    b, _, height, width = image.shape
    gh, gw = height // patch, width // patch
    gray = GRAY[0] * image[:, 0:1] + GRAY[1] * image[:, 1:2] + GRAY[2] * image[:, 2:3]  # [B,1,H,W]
    # patches in raster order, pixels of a patch in raster order (same layout as nn.Unfold)
    values = gray.reshape(b, gh, patch, gw, patch).permute(0, 1, 3, 2, 4).reshape(b * gh * gw, patch * patch)
    residuals = values.unsqueeze(2) - bins.to(image).reshape(1, 1, -1)  # [N, P*P, bins]
    kernel = torch.exp(-0.5 * (residuals / torch.tensor(sigma, dtype=image.dtype)).pow(2))
    pdf = kernel.mean(dim=1)  # [N, bins]
    pdf = pdf / (pdf.sum(dim=1, keepdim=True) + ENTROPY_EPS) + ENTROPY_EPS
    # In torch pdf >= 1e-40 > 0, so the Where is a no-op and values equal the official ones bit
    # for bit. ONNX Runtime / TensorRT flush subnormals (the exporter even drops the +1e-40):
    # there empty bins are exactly 0 (or NaN for an all-empty patch) and count as 0 instead of
    # NaN. That changes entropies only below ~3e-37, under every practical threshold.
    terms = torch.where(pdf > 0, pdf * torch.log(pdf), torch.zeros_like(pdf))
    entropy = -terms.sum(dim=1)
    return entropy.reshape(b, gh, gw)


def load_thresholds(path: str | Path) -> dict[str, float]:
    from dq_edge.artifact.json_file import parse_json_bytes, read_json_bytes

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"entropy thresholds file {path} does not exist", "pass --thresholds with the right path")
    hint = "pass the thresholds JSON written by the official tool"
    raw = parse_json_bytes(read_json_bytes(path, hint), path, hint)  # bounded size and depth, UTF-8
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path} is not a thresholds JSON object", 'expected {"1": t1, ..., "99": t99}')
    try:
        return {str(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path} has a non-numeric threshold: {exc}", 'expected {"1": t1, ..., "99": t99}') from exc


def pick_threshold(thresholds: dict[str, float], key: str, source: str = "thresholds") -> float:
    if key not in thresholds:
        raise ConfigError(
            f"{source} has no key {key!r} (needed for the target fine ratio)",
            "use a thresholds JSON with percentile keys '1'..'99' or change target_fine_ratio",
        )
    value = float(thresholds[key])
    if not math.isfinite(value):
        raise ConfigError(f"{source}[{key!r}] is not finite", "recompute the thresholds")
    return value


def percentile_thresholds(entropies: Iterable[torch.Tensor]) -> dict[str, float]:
    """Thresholds JSON from region entropies of a dataset: key p -> the value at index
    floor(N * p / 100) of the sorted entropies (the official tool's rule)."""
    flat = torch.sort(torch.cat([e.reshape(-1).float() for e in entropies])).values
    n = flat.numel()
    if n == 0:
        raise ConfigError("no entropies to compute thresholds from", "pass at least one image")
    return {str(p): float(flat[min(n * p // 100, n - 1)]) for p in range(1, 100)}


class EntropyRouter(nn.Module):
    def __init__(self, cfg: VAEConfig, thresholds: dict[str, float] | None = None):
        super().__init__()
        self.patch = cfg.entropy_patch_size
        self.sigma = cfg.entropy_sigma
        self.key = cfg.threshold_key
        self.register_buffer("bins", entropy_bins(cfg.entropy_bins), persistent=False)
        self.thresholds: dict[str, float] | None = None
        self.threshold: float | None = None
        if thresholds is not None:
            self.set_thresholds(thresholds)

    def set_thresholds(self, thresholds: dict[str, float], source: str = "thresholds") -> None:
        self.threshold = pick_threshold(thresholds, self.key, source)
        self.thresholds = dict(thresholds)

    def entropy(self, image: torch.Tensor) -> torch.Tensor:
        return region_entropy(image, self.patch, self.bins, self.sigma)

    def forward(self, h_coarse: torch.Tensor, h_fine: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        if image is None:
            raise ConfigError("the entropy router needs the input image", "call dgc(h_coarse, h_fine, image)")
        if self.threshold is None:
            raise ConfigError(
                "the entropy router has no thresholds",
                "load a model folder with thresholds.json or set them with set_thresholds()",
            )
        fine = self.entropy(image) > self.threshold  # [B, Hc, Wc]
        return torch.stack([~fine, fine], dim=-1).to(image.dtype)  # one-hot logits [B,Hc,Wc,2]


def build_router(cfg: VAEConfig, thresholds: dict[str, float] | None = None) -> nn.Module:
    return FeatureRouter(cfg) if cfg.router == "feature" else EntropyRouter(cfg, thresholds)


def budget_loss(gate: torch.Tensor, cfg: VAEConfig) -> torch.Tensor:
    """gamma * (fine ratio - target)^2 on the (straight-through) one-hot gate [B, Hc, Wc, 2].

    The official loss counts coarse regions once and fine regions four times and rescales,
    which is exactly the batch's fine-region ratio; `budget_symmetric` doubles it as they do.
    """
    ratio = gate[..., 1].mean()
    loss = cfg.budget_gamma * (ratio - cfg.target_fine_ratio) ** 2
    return 2.0 * loss if cfg.budget_symmetric else loss
