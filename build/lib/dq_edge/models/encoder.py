"""Dual-grain encoder: a shared downsampling trunk with two heads.

The fine head leaves the trunk at the output of the second-to-last level (before its
downsampling), the coarse head after the last level, so the fine grid is twice the coarse
grid. Each head is mid block -> GroupNorm -> swish -> 3x3 conv to `z_channels`.
"""

from __future__ import annotations

import torch
from torch import nn

from dq_edge.models.blocks import Downsample, Level, MidBlock, group_norm, swish
from dq_edge.models.vae_config import VAEConfig


class EncoderHead(nn.Module):
    def __init__(self, channels: int, z_channels: int, groups: int, dropout: float):
        super().__init__()
        self.mid = MidBlock(channels, groups, dropout)
        self.norm_out = group_norm(channels, groups)
        self.conv_out = nn.Conv2d(channels, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(swish(self.norm_out(self.mid(x))))


class DualGrainEncoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        g = cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        res, block_in = cfg.image_size, cfg.ch
        last = len(cfg.ch_mult) - 1
        for i, mult in enumerate(cfg.ch_mult):
            block_out = cfg.ch * mult
            widths = [(block_in if j == 0 else block_out, block_out) for j in range(cfg.num_res_blocks)]
            level = Level(widths, res in cfg.attn_resolutions, g, cfg.dropout)
            block_in = block_out
            if i != last:
                level.downsample = Downsample(block_in, cfg.resamp_with_conv)
                res //= 2
            self.down.append(level)
        self.coarse = EncoderHead(cfg.coarse_channels, cfg.z_channels, g, cfg.dropout)
        self.fine = EncoderHead(cfg.fine_channels, cfg.z_channels, g, cfg.dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B,3,H,W] -> (h_coarse [B,Cz,Hc,Wc], h_fine [B,Cz,Hf,Wf])."""
        h = self.conv_in(x)
        last = len(self.down) - 1
        trunk_fine = h
        for i, level in enumerate(self.down):
            h = level.run_blocks(h)
            if i == last - 1:
                trunk_fine = h  # fine branch taps the level output before its downsampling
            if i != last:
                h = level.downsample(h)
        return self.coarse(h), self.fine(trunk_fine)
