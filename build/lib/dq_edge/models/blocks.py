"""Convolutional building blocks shared by the encoder and the decoder.

Module attribute names (norm1, conv1, nin_shortcut, q, k, v, proj_out, ...) follow the official
checkpoints' state-dict keys so an import is a strict rename-free copy. Numerics follow the
official blocks: GroupNorm(eps=1e-6, affine), swish, 1/sqrt(C) attention scale, asymmetric
(right/bottom) zero padding before the stride-2 downsampling conv, nearest 2x upsampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # a 1x1 projection only when the width changes (as the checkpoints have it)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        skip = self.nin_shortcut(x) if self.nin_shortcut is not None else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, residual."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, height, width = x.shape
        q = self.q(h).reshape(b, c, height * width).permute(0, 2, 1)  # [B, N, C]
        k = self.k(h).reshape(b, c, height * width)  # [B, C, N]
        v = self.v(h).reshape(b, c, height * width)  # [B, C, N]
        scores = torch.bmm(q, k) * (int(c) ** -0.5)  # [B, Nq, Nk]
        attn = torch.softmax(scores, dim=2)
        out = torch.bmm(v, attn.permute(0, 2, 1))  # [B, C, Nq]
        return x + self.proj_out(out.reshape(b, c, height, width))


class Downsample(nn.Module):
    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0) if with_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is None:
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        # pad only right and bottom so a 3x3/stride-2 conv halves even sizes exactly
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if with_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.conv is not None else x


class MidBlock(nn.Module):
    """ResNet -> attention -> ResNet at constant width (keys block_1, attn_1, block_2)."""

    def __init__(self, channels: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups, dropout)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution level: `block` ResNet blocks, each optionally followed by attention."""

    def __init__(self, widths: list[tuple[int, int]], with_attn: bool, groups: int, dropout: float):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(i, o, groups, dropout) for i, o in widths)
        self.attn = nn.ModuleList(AttnBlock(o, groups) for _, o in widths) if with_attn else nn.ModuleList()

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x
