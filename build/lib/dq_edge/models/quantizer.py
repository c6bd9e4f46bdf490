"""Shared codebook vector quantizer with EMA updates and dead-code restart.

The codebook has K + 1 rows: row K is a padding row that the official checkpoints store and
that nearest-code search never returns. Codebook vectors are not trained by gradients; in
training mode every forward updates EMA statistics (cluster sizes, vector sums), restarts
codes whose EMA usage fell below 1 with random vectors of the current batch, and rewrites
the codebook from the EMA statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Codebook(nn.Module):
    def __init__(self, n_codes: int, dim: int, decay: float, eps: float, restart_unused: bool):
        super().__init__()
        self.n_codes, self.dim = n_codes, dim
        self.decay, self.eps, self.restart_unused = decay, eps, restart_unused
        weight = torch.empty(n_codes + 1, dim).uniform_(-1.0 / n_codes, 1.0 / n_codes)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.register_buffer("cluster_size_ema", torch.zeros(n_codes))
        self.register_buffer("embed_ema", weight[:-1].clone())

    def distances(self, flat: torch.Tensor) -> torch.Tensor:
        """flat [N, D] -> squared distances [N, K] to the K searchable codes (padding excluded).

        Same expression and evaluation order as the official search (|x|^2 + |e|^2 - 2 x.e via
        addmm on the transposed codebook) so near-ties resolve identically."""
        codebook_t = self.weight[:-1, :].t()  # [D, K]
        x_sq = flat.pow(2.0).sum(dim=1, keepdim=True)  # [N, 1]
        e_sq = codebook_t.pow(2.0).sum(dim=0, keepdim=True)  # [1, K]
        return torch.addmm(x_sq + e_sq, flat, codebook_t, alpha=-2.0)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        return self.distances(flat).argmin(dim=-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.weight)

    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        one_hot = flat.new_zeros(self.n_codes, flat.shape[0])  # [K, N]
        one_hot.scatter_(0, codes.reshape(1, -1), 1.0)
        self.cluster_size_ema.mul_(self.decay).add_(one_hot.sum(dim=1), alpha=1 - self.decay)
        self.embed_ema.mul_(self.decay).add_(one_hot @ flat, alpha=1 - self.decay)
        if self.restart_unused:
            self._restart_dead_codes(flat)
        total = self.cluster_size_ema.sum()
        # Laplace smoothing keeps a barely-used code from dividing by ~0
        size = total * (self.cluster_size_ema + self.eps) / (total + self.n_codes * self.eps)
        self.weight[:-1, :] = self.embed_ema / size.reshape(-1, 1)

    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        candidates = flat
        if flat.shape[0] < self.n_codes:  # too few vectors: tile them with small noise
            repeats = -(-self.n_codes // flat.shape[0])
            candidates = flat.repeat(repeats, 1)
            candidates = candidates + torch.rand_like(candidates) * (0.01 / self.dim**0.5)
        picks = candidates[torch.randperm(candidates.shape[0], device=flat.device)[: self.n_codes]]
        alive = (self.cluster_size_ema >= 1).to(flat.dtype).reshape(-1, 1)  # [K, 1]
        self.embed_ema.mul_(alive).add_(picks * (1 - alive))
        self.cluster_size_ema.mul_(alive.reshape(-1)).add_(1 - alive.reshape(-1))


class VectorQuantizer(nn.Module):
    """Channel-first feature maps [B, D, H, W] -> codes [B, H, W] (+ quantized map, loss)."""

    def __init__(self, n_codes: int, dim: int, beta: float, decay: float, eps: float, restart_unused: bool):
        super().__init__()
        self.beta = beta
        self.codebook = Codebook(n_codes, dim, decay, eps, restart_unused)

    @staticmethod
    def _flatten(z: torch.Tensor) -> torch.Tensor:
        b, d, h, w = z.shape
        return z.permute(0, 2, 3, 1).reshape(b * h * w, d)  # [B*H*W, D], raster order

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        b, _, h, w = z.shape
        return self.codebook.nearest(self._flatten(z)).reshape(b, h, w)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, H, W] -> [B, D, H, W]."""
        return self.codebook.lookup(codes).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor, cell_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [B,D,H,W], cell_weight [B,1,H,W] (1/4 on coarse cells) ->
        (straight-through quantized z, codebook + commitment loss, codes [B,H,W])."""
        b, d, h, w = z.shape
        flat = self._flatten(z)
        with torch.no_grad():
            codes = self.codebook.nearest(flat)
        quant = self.codebook.lookup(codes)  # looked up before this step's EMA rewrite
        if self.training:
            self.codebook.ema_update(flat.detach(), codes)
        weight = self._flatten(cell_weight)  # [B*H*W, 1]
        commitment = torch.mean((quant.detach() - flat) ** 2 * weight)
        codebook = torch.mean((quant - flat.detach()) ** 2 * weight)
        loss = self.beta * commitment + codebook
        quant = flat + (quant - flat).detach()
        quant = quant.reshape(b, h, w, d).permute(0, 3, 1, 2)  # [B, D, H, W]
        return quant, loss, codes.reshape(b, h, w)
