"""The stacked DQ-Transformer (torch reference, teacher forcing and the pieces the KV steps use).

Position stack (causal GPT, pre-LN) reads, per token t:
    content_emb[content_t] + grid_pos_emb(segment_t)[position_t] + pos_emb[t] + seg_emb[segment_t]
and its head predicts position_{t+1}. Content stack (causal GPT) reads
    position_hidden_t + grid_pos_emb(segment_{t+1})[position_{t+1}]
and its head predicts content_{t+1}. Parameter names follow the official checkpoints, so an
imported state dict loads without renaming (docs/design.md §1, docs/transformer.md).

Masks are finite (MASK_VALUE) and softmax runs in fp32 so the same code exports to fp16 graphs.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dq_edge.atomic import write_json
from dq_edge.errors import CheckpointError, ConfigError
from dq_edge.models.folder import CONFIG_NAME, load_checked_tensors, read_config, update_model_folder, write_model_folder
from dq_edge.models.transformer_config import TransformerConfig
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout

MASK_VALUE = -1.0e4  # finite in fp16; exp(-1e4) underflows to exactly 0 in fp32


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.key = nn.Linear(width, width)
        self.query = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)
        self.attn_drop = nn.Dropout(dropout)
        self.resid_drop = nn.Dropout(dropout)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        B, T, C = t.shape
        return t.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # [B, H, T, D]

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        B, H, T, D = y.shape
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, H * D)))  # [B, T, C]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B,T,C], causal over T -> (out [B,T,C], k, v [B,H,T,D])."""
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        T = x.shape[1]
        idx = torch.arange(T, device=x.device)
        causal = idx[None, :] <= idx[:, None]  # [T, T]: key j visible from query i when j <= i
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # [B, H, T, T]
        scores = scores.masked_fill(~causal, MASK_VALUE)
        att = self.attn_drop(torch.softmax(scores.float(), dim=-1).to(v.dtype))
        return self._merge(att @ v), k, v

    def step(
        self, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token x [B,1,C] against a static cache past_k/v [B,H,L,D] whose rows are valid
        where `valid` [L] is true; the new key attends to itself via a separate score so the
        cache is never written or sliced here. Returns (out [B,1,C], k, v [B,H,1,D])."""
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scale = 1.0 / math.sqrt(q.shape[-1])
        past_scores = (q @ past_k.transpose(-2, -1)) * scale  # [B, H, 1, L]
        past_scores = past_scores.masked_fill(~valid, MASK_VALUE)
        own_score = (q * k).sum(-1, keepdim=True) * scale  # [B, H, 1, 1]
        att = torch.softmax(torch.cat([past_scores, own_score], dim=-1).float(), dim=-1).to(v.dtype)
        L = past_k.shape[2]
        y = att[..., :L] @ past_v + att[..., L:] * v  # [B, H, 1, D]
        return self._merge(y), k, v


class Block(nn.Module):
    """Pre-LN GPT block: x + attn(ln1(x)), then + mlp(ln2(x)) with a 4x GELU MLP."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.ln2 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, k, v = self.attn(self.ln1(x))
        x = x + a
        return x + self.mlp(self.ln2(x)), k, v

    def step(self, x, past_k, past_v, valid):
        a, k, v = self.attn.step(self.ln1(x), past_k, past_v, valid)
        x = x + a
        return x + self.mlp(self.ln2(x)), k, v


KV = list[tuple[torch.Tensor, torch.Tensor]]


class StackedTransformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        C, p = config.width, config.dropout
        self.content_emb = nn.Embedding(config.content_vocab, C)
        self.content_coarse_pos_emb = nn.Embedding(config.coarse_position_vocab, C)
        self.content_fine_pos_emb = nn.Embedding(config.fine_position_vocab, C)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, C))
        self.seg_emb = nn.Embedding(2, C)
        self.drop = nn.Dropout(p)
        self.position_transformer = nn.ModuleList(Block(C, config.heads, p) for _ in range(config.position_layers))
        self.content_transformer = nn.ModuleList(Block(C, config.heads, p) for _ in range(config.content_layers))
        self.position_head = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, config.position_vocab, bias=False))
        self.content_head = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, config.content_vocab, bias=False))
        self.apply(self._init_weights)
        nn.init.normal_(self.pos_emb, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def layout(self) -> TokenLayout:
        return self.config.layout

    # -- embeddings -------------------------------------------------------------------------
    def grid_position_embedding(self, position: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
        """Embedding of a position id in its segment's table. Ids are clamped into each table
        first: fine ids exceed the coarse table and both branches are computed before Where."""
        coarse = self.content_coarse_pos_emb(position.clamp(0, self.config.coarse_position_vocab - 1))
        fine = self.content_fine_pos_emb(position.clamp(0, self.config.fine_position_vocab - 1))
        return torch.where((segment == SEGMENT_COARSE).unsqueeze(-1), coarse, fine)

    def token_embedding(self, content, position, segment, rows: torch.Tensor) -> torch.Tensor:
        """Position-stack input for tokens at absolute indices `rows`: [T] (broadcast over the
        batch) or [B, T] (per sample: KV steps of rows at different steps)."""
        x = self.content_emb(content) + self.grid_position_embedding(position, segment)
        return self.drop(x + F.embedding(rows, self.pos_emb[0]) + self.seg_emb(segment))

    # -- stacks over whole sequences ---------------------------------------------------------
    def position_stack(self, content, position, segment) -> tuple[torch.Tensor, KV]:
        """Tokens [B,T] -> position hidden [B,T,C] and per-layer (k, v) [B,H,T,D]."""
        x = self.token_embedding(content, position, segment, torch.arange(content.shape[1], device=content.device))
        kv = []
        for block in self.position_transformer:
            x, k, v = block(x)
            kv.append((k, v))
        return x, kv

    def content_stack(self, hidden, next_position, next_segment) -> tuple[torch.Tensor, KV]:
        """Position hidden [B,T,C] + the next tokens' positions -> content hidden [B,T,C], kv."""
        x = hidden + self.grid_position_embedding(next_position, next_segment)
        kv = []
        for block in self.content_transformer:
            x, k, v = block(x)
            kv.append((k, v))
        return x, kv

    def forward(self, content, position, segment) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: LongTensors [B,T] -> (position_logits [B,T-1,Vp], content_logits
        [B,T-1,Vc]); row t predicts position[t+1] and content[t+1]."""
        if content.shape[1] < 2:
            raise ConfigError("teacher forcing needs at least 2 tokens per sample")
        hidden, _ = self.position_stack(content[:, :-1], position[:, :-1], segment[:, :-1])
        content_hidden, _ = self.content_stack(hidden, position[:, 1:], segment[:, 1:])
        return self.position_head(hidden), self.content_head(content_hidden)

    def loss_terms(self, content, position, segment) -> dict[str, torch.Tensor]:
        """Content CE + mean of coarse and fine position CE; padding targets are ignored."""
        position_logits, content_logits = self(content, position, segment)
        L = self.layout
        next_content, next_position, next_segment = content[:, 1:], position[:, 1:], segment[:, 1:]
        content_loss = F.cross_entropy(content_logits.flatten(0, 1), next_content.flatten(), ignore_index=L.content_pad)
        terms = {"content": content_loss}
        for name, seg in (("coarse_position", SEGMENT_COARSE), ("fine_position", SEGMENT_FINE)):
            pad = L.position_pad(seg)
            target = torch.where(next_segment == seg, next_position, torch.full_like(next_position, -100))
            target = target.masked_fill(target == pad, -100)  # -100: cross_entropy's ignore index
            terms[name] = F.cross_entropy(position_logits.flatten(0, 1), target.flatten(), ignore_index=-100)
        terms["position"] = (terms["coarse_position"] + terms["fine_position"]) / 2
        terms["loss"] = terms["content"] + terms["position"]
        return terms

    def loss(self, content, position, segment) -> torch.Tensor:
        return self.loss_terms(content, position, segment)["loss"]


# -- building, saving, loading ---------------------------------------------------------------
def build_transformer(
    preset_or_config: str | TransformerConfig, layout: TokenLayout | None = None, seed: int | None = None, **overrides
) -> StackedTransformer:
    if isinstance(preset_or_config, TransformerConfig):
        config = preset_or_config if layout is None else preset_or_config.with_layout(layout)
    else:
        if layout is None:
            raise ConfigError("a preset needs the token layout of its VAE", "pass layout=TokenLayout(...)")
        config = TransformerConfig.from_preset(preset_or_config, layout, **overrides)
    if seed is not None:
        torch.manual_seed(seed)
    return StackedTransformer(config).eval()


def transformer_state(tr: StackedTransformer) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config section, unprefixed tensors) as stored in a model folder."""
    return tr.config.to_dict(), {k: v.detach().cpu().contiguous() for k, v in tr.state_dict().items()}


def save_transformer(tr: StackedTransformer, folder: str | Path, overwrite: bool = False) -> Path:
    """Add or replace the transformer section of a model folder (created if absent)."""
    folder = Path(folder)
    section, tensors = transformer_state(tr)
    if (folder / CONFIG_NAME).is_file():
        update_model_folder(folder, "transformer", section, tensors)
        cfg = read_config(folder)
        if not cfg.get("tokens") or TokenLayout.from_dict(cfg["tokens"]) != tr.layout:  # the folder's layout is now the transformer's (classes)
            cfg["tokens"] = tr.layout.to_dict()
            write_json(folder / CONFIG_NAME, cfg)
        return folder
    prefixed = {f"transformer.{k}": v for k, v in tensors.items()}
    config = {"vae": None, "transformer": section, "tokens": tr.layout.to_dict()}
    return write_model_folder(folder, config, prefixed, overwrite=overwrite)


def transformer_from_state(section: dict, tensors: dict[str, torch.Tensor], where: str = "checkpoint") -> StackedTransformer:
    tr = StackedTransformer(TransformerConfig.from_dict(section))
    expected = tr.state_dict()
    missing, unexpected = sorted(expected.keys() - tensors.keys()), sorted(tensors.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: transformer weights do not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})",
            "re-create the model folder",
        )
    for name, p in expected.items():
        if p.shape != tensors[name].shape:
            raise CheckpointError(
                f"{where}: {name} has shape {tuple(tensors[name].shape)}, its config needs {tuple(p.shape)}",
                "re-create the model folder",
            )
    tr.load_state_dict(tensors)
    return tr.eval()


def load_transformer(folder: str | Path) -> StackedTransformer:
    cfg = read_config(folder)
    if not cfg.get("transformer"):
        raise ConfigError(
            f"{folder} has no transformer", "train one with `dq-edge train transformer` or import a stage-2 checkpoint"
        )
    config = TransformerConfig.from_dict(cfg["transformer"])
    tensors = load_checked_tensors(folder, "transformer", lambda: StackedTransformer(config), "transformer")
    return transformer_from_state(cfg["transformer"], tensors, where=str(folder))
