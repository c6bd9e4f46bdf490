"""Reconstruction metrics through torchmetrics: PSNR, SSIM, MS-SSIM (inputs float [B,3,H,W] in [-1,1]).

MS-SSIM's default (5 scales, 11-px Gaussian of sigma 1.5) needs images of at least ~161 px. For the
32-64 px images used here only the first 2-3 scales fit; their betas are renormalised to sum to 1
and the label says so: such numbers are not comparable with 256-px MS-SSIM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@dataclass(frozen=True)
class MSSSIMSetup:
    scales: int
    betas: tuple[float, ...]

    @property
    def label(self) -> str:
        if self.scales == 5:
            return "MS-SSIM (standard: 5 scales, Gaussian sigma 1.5)"
        return f"MS-SSIM (adapted to small images: {self.scales} of 5 scales, Gaussian sigma 1.5, betas renormalised)"


GAUSS_KERNEL = 11  # what torchmetrics derives from sigma 1.5; it ignores kernel_size for Gaussian windows


def msssim_setup(size: int) -> MSSSIMSetup:
    """Most scales (<= 5) that `size` px supports with the standard 1.5-sigma window.

    torchmetrics needs size > (kernel - 1) * (scales - 1)^2, and the coarsest scale must stay
    larger than the reflection padding (kernel // 2).
    """
    for scales in range(5, 0, -1):
        fits = size > (GAUSS_KERNEL - 1) * max(1, scales - 1) ** 2 and size // 2 ** (scales - 1) > GAUSS_KERNEL // 2
        if fits and size >= 2**scales:
            betas = DEFAULT_BETAS[:scales]
            total = sum(betas)
            return MSSSIMSetup(scales, tuple(b / total for b in betas))
    raise ValueError(f"images of {size} px are too small for MS-SSIM")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def recon_metrics(recon: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB), SSIM and MS-SSIM of `recon` against `target`, each [B]."""
    from torchmetrics.functional.image import (
        multiscale_structural_similarity_index_measure as ms_ssim,
        peak_signal_noise_ratio as psnr,
        structural_similarity_index_measure as ssim,
    )

    p, t = _unit(recon), _unit(target)
    setup = msssim_setup(min(p.shape[-2:]))
    return {
        "psnr": psnr(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3)),
        "ssim": ssim(p, t, data_range=1.0, reduction="none"),
        "ms_ssim": torch.stack(
            [
                ms_ssim(p[i : i + 1], t[i : i + 1], data_range=1.0, betas=setup.betas, normalize="relu")
                for i in range(len(p))
            ]
        ),
    }
