"""Hyperparameters of the stacked DQ-Transformer and its presets.

The config carries the TokenLayout: vocab sizes follow from it (docs/design.md §2), so a model
folder's transformer section is enough to rebuild the network without flags.
- content vocab          K + 2 + S        (S = start tokens: 1 SOS, or C classes [+ null class])
- coarse position table  Nc + 2 + S
- fine position table    Nf + 2 + S
- position head output   Nf + 2 + S       (one head predicts coarse and fine positions)
These equal the official YAMLs: uncond 1027 / 259 / 1027, class-1000 2026 / 1258 / 2026.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dq_edge.errors import ConfigError
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout

# width, heads, position layers, content layers, block size (None = layout.max_length), dropout
PRESETS: dict[str, dict] = {
    "tiny": dict(width=32, heads=2, position_layers=1, content_layers=2, block_size=None, dropout=0.0),
    "emoji64": dict(width=256, heads=4, position_layers=2, content_layers=4, block_size=None, dropout=0.1),
    "p6c18": dict(width=1024, heads=8, position_layers=6, content_layers=18, block_size=2048, dropout=0.1),
}


@dataclass(frozen=True)
class TransformerConfig:
    layout: TokenLayout
    width: int
    heads: int
    position_layers: int
    content_layers: int
    block_size: int  # rows of the learned absolute position table; >= layout.max_length
    dropout: float = 0.0  # embedding, attention and residual dropout (training only)

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ConfigError(f"width {self.width} is not divisible by heads {self.heads}", "pick matching sizes")
        if self.block_size < self.layout.max_length:
            raise ConfigError(
                f"block size {self.block_size} < longest sequence {self.layout.max_length}",
                "raise block_size or use a smaller image grid",
            )
        if min(self.position_layers, self.content_layers) < 1:
            raise ConfigError("each stack needs at least one layer")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def content_vocab(self) -> int:
        return self.layout.content_vocab

    @property
    def coarse_position_vocab(self) -> int:
        return self.layout.position_vocab(SEGMENT_COARSE)

    @property
    def fine_position_vocab(self) -> int:
        return self.layout.position_vocab(SEGMENT_FINE)

    @property
    def position_vocab(self) -> int:
        """Output size of the position head (the fine table's size, as in the official model)."""
        return self.fine_position_vocab

    @classmethod
    def from_preset(cls, name: str, layout: TokenLayout, **overrides) -> "TransformerConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown transformer preset {name!r}", f"choose one of {', '.join(PRESETS)}")
        params = {**PRESETS[name], **overrides}
        if params["block_size"] is None:
            params["block_size"] = layout.max_length
        return cls(layout=layout, **params)

    def with_layout(self, layout: TokenLayout) -> "TransformerConfig":
        return replace(self, layout=layout)

    def to_dict(self) -> dict:
        return {
            "model_type": "dq-transformer",
            "width": self.width,
            "heads": self.heads,
            "position_layers": self.position_layers,
            "content_layers": self.content_layers,
            "block_size": self.block_size,
            "dropout": self.dropout,
            "tokens": self.layout.to_dict(),
            # derived, stored so the file explains itself
            "content_vocab": self.content_vocab,
            "coarse_position_vocab": self.coarse_position_vocab,
            "fine_position_vocab": self.fine_position_vocab,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        try:
            cfg = cls(
                layout=TokenLayout.from_dict(d["tokens"]),
                width=int(d["width"]),
                heads=int(d["heads"]),
                position_layers=int(d["position_layers"]),
                content_layers=int(d["content_layers"]),
                block_size=int(d["block_size"]),
                dropout=float(d.get("dropout", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"transformer config is incomplete: {exc}", "re-create the model folder") from exc
        for key in ("content_vocab", "coarse_position_vocab", "fine_position_vocab"):
            if key in d and int(d[key]) != getattr(cfg, key):
                raise ConfigError(
                    f"transformer config says {key}={d[key]} but its token layout gives {getattr(cfg, key)}",
                    "the config was edited by hand; re-create the model folder",
                )
        return cfg
