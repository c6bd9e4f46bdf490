"""Decoder with 2-D position embeddings on its input.

Codes carry no location (a coarse region's code is simply repeated on its 2x2 cells), so the
decoder adds position information before its first conv: a Fourier embedding (1x1 conv of the
fixed [-1, 1] (x, y) grid followed by sin) and/or learned row + column embeddings.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dq_edge.models.blocks import Level, MidBlock, Upsample, group_norm, swish
from dq_edge.models.vae_config import VAEConfig


class FourierFeatures(nn.Module):
    """Keys `lff.ffm.conv` as in the checkpoints: a 2 -> C 1x1 conv followed by sin."""

    def __init__(self, channels: int):
        super().__init__()
        self.ffm = nn.Module()
        self.ffm.conv = nn.Conv2d(2, channels, 1)
        bound = math.sqrt(9 / 2)  # SIREN-style first-layer init
        nn.init.uniform_(self.ffm.conv.weight, -bound, bound)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.ffm.conv(coords))


class FourierPositionEmbedding(nn.Module):
    def __init__(self, size: int, channels: int):
        super().__init__()
        self.lff = FourierFeatures(channels)
        axis = torch.linspace(-1, 1, size)
        xs = axis.reshape(1, 1, 1, size).expand(1, 1, size, size)  # x varies along width
        ys = axis.reshape(1, 1, size, 1).expand(1, 1, size, size)  # y varies along height
        self.register_buffer("coords", torch.cat([xs, ys], dim=1), persistent=False)  # [1, 2, S, S]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.lff(self.coords)


class LearnedPositionEmbedding(nn.Module):
    """x[b, c, i, j] += row_embed[i, c] + col_embed[j, c]."""

    def __init__(self, size: int, channels: int):
        super().__init__()
        self.row_embed = nn.Embedding(size, channels)
        self.col_embed = nn.Embedding(size, channels)
        nn.init.trunc_normal_(self.row_embed.weight, std=1.0, a=-2.0, b=2.0)
        nn.init.trunc_normal_(self.col_embed.weight, std=1.0, a=-2.0, b=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        cols = self.col_embed.weight[:w].unsqueeze(0)  # [1, W, C]
        rows = self.row_embed.weight[:h].unsqueeze(1)  # [H, 1, C]
        return x + (cols + rows).permute(2, 0, 1).unsqueeze(0)  # [1, C, H, W]


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        g, n_levels = cfg.norm_groups, len(cfg.dec_ch_mult)
        latent = cfg.fine_hw[0]
        c_in = cfg.z_channels
        self.position_type = cfg.position_type
        if "fourier" in cfg.position_type:
            self.position_bias_fourier = FourierPositionEmbedding(latent, c_in)
        if "learned" in cfg.position_type:
            self.position_bias_learned = LearnedPositionEmbedding(latent, c_in)
        block_in = cfg.dec_ch * cfg.dec_ch_mult[-1]
        self.conv_in = nn.Conv2d(c_in, block_in, 3, padding=1)
        self.mid = MidBlock(block_in, g, cfg.dropout)
        # built from the lowest resolution up, stored lowest-index = highest resolution
        levels: list[Level] = []
        res = latent
        for i in reversed(range(n_levels)):
            block_out = cfg.dec_ch * cfg.dec_ch_mult[i]
            widths = [(block_in if j == 0 else block_out, block_out) for j in range(cfg.dec_num_res_blocks + 1)]
            level = Level(widths, res in cfg.dec_attn_resolutions, g, cfg.dropout)
            block_in = block_out
            if i != 0:
                level.upsample = Upsample(block_in, cfg.resamp_with_conv)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in, g)
        self.conv_out = nn.Conv2d(block_in, cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, Cz, Hf, Wf] (after post_quant_conv) -> image [B, 3, H, W], unclamped."""
        if "fourier" in self.position_type:
            z = self.position_bias_fourier(z)
        if "learned" in self.position_type:
            z = self.position_bias_learned(z)
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            h = self.up[i].run_blocks(h)
            if i != 0:
                h = self.up[i].upsample(h)
        return self.conv_out(swish(self.norm_out(h)))
