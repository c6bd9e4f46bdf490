"""KV-cache steps of the stacked transformer: nn.Modules whose forward IS the graph IO of
`dq_edge.graph_io` (transformer_position_step, transformer_content_step, transformer_prefill),
same input order and output order, so they export directly with torch.onnx.export.

Rules (docs/design.md §4): caches are static [B,H,L,D] inputs and are never written or sliced by
`step`; `step` ([B] int64, one index per sample: rows of a batch may be at different steps)
appears only in a comparison (`row < step[b]`) and as a Gather index into the absolute position
table; masks are finite; no If/Loop/ScatterND; no zero-size tensors. The caller stores sample
b's returned K/V row [H,1,D] at row `step[b]` of its caches (graph_io.store_rows).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dq_edge.graph_io import GraphDims, kv_names
from dq_edge.models.transformer import StackedTransformer


def _run_steps(blocks: nn.ModuleList, x: torch.Tensor, step: torch.Tensor, past_kv: tuple[torch.Tensor, ...]):
    """x [B,1,C] through `blocks` against caches; returns (x [B,1,C], [k0, v0, k1, v1, ...])."""
    L = past_kv[0].shape[2]
    # [B, 1, 1, L]: per sample, the rows written by its earlier steps (broadcast over heads)
    valid = (torch.arange(L, device=x.device)[None, :] < step[:, None])[:, None, None, :]
    presents: list[torch.Tensor] = []
    for i, block in enumerate(blocks):
        x, k, v = block.step(x, past_kv[2 * i], past_kv[2 * i + 1], valid)
        presents += [k, v]
    return x, presents


class PositionStep(nn.Module):
    """(content[B], position[B], segment[B], step[B], past_key.0, past_value.0, ...) ->
    (position_logits[B,Vp] fp32, hidden[B,C], present_key.0, present_value.0, ...)."""

    def __init__(self, tr: StackedTransformer):
        super().__init__()
        self.tr = tr

    def forward(self, content, position, segment, step, *past_kv):
        tr = self.tr
        x = tr.token_embedding(content.unsqueeze(1), position.unsqueeze(1), segment.unsqueeze(1), step.unsqueeze(1))  # [B, 1, C]
        x, presents = _run_steps(tr.position_transformer, x, step, past_kv)
        hidden = x[:, 0]  # [B, C]
        return (tr.position_head(hidden).float(), hidden, *presents)


class ContentStep(nn.Module):
    """(hidden[B,C], next_position[B], next_segment[B], step[B], past_key.0, ...) ->
    (content_logits[B,Vc] fp32, present_key.0, present_value.0, ...)."""

    def __init__(self, tr: StackedTransformer):
        super().__init__()
        self.tr = tr

    def forward(self, hidden, next_position, next_segment, step, *past_kv):
        tr = self.tr
        x = hidden.unsqueeze(1) + tr.grid_position_embedding(next_position.unsqueeze(1), next_segment.unsqueeze(1))
        x, presents = _run_steps(tr.content_transformer, x, step, past_kv)
        return (tr.content_head(x[:, 0]).float(), *presents)


class Prefill(nn.Module):
    """(content[B,T], position[B,T], segment[B,T]) -> (position_logits[B,Vp] of row T-1,
    hidden[B,C] of row T-1, position_present_key.0, ... [B,H,T,D], content_present_key.0, ...
    [B,H,T-1,D])."""

    def __init__(self, tr: StackedTransformer):
        super().__init__()
        self.tr = tr

    def forward(self, content, position, segment):
        tr = self.tr
        hidden, position_kv = tr.position_stack(content, position, segment)
        _, content_kv = tr.content_stack(hidden[:, :-1], position[:, 1:], segment[:, 1:])
        last = hidden[:, -1]  # [B, C]
        flat = [t for kv in position_kv + content_kv for t in kv]
        return (tr.position_head(last).float(), last, *flat)


def step_input_names(tr: StackedTransformer, graph: str) -> list[str]:
    """Input names in forward order (equal to graph_io's spec; handy for torch.onnx.export)."""
    c = tr.config
    if graph == "transformer_position_step":
        return ["content", "position", "segment", "step"] + kv_names("", c.position_layers, "past")
    if graph == "transformer_content_step":
        return ["hidden", "next_position", "next_segment", "step"] + kv_names("", c.content_layers, "past")
    if graph == "transformer_prefill":
        return ["content", "position", "segment"]
    raise KeyError(graph)


def step_modules(tr: StackedTransformer) -> dict[str, nn.Module]:
    return {
        "transformer_position_step": PositionStep(tr),
        "transformer_content_step": ContentStep(tr),
        "transformer_prefill": Prefill(tr),
    }


def transformer_dims(tr: StackedTransformer) -> dict:
    """The transformer's share of GraphDims."""
    c = tr.config
    return {
        "width": c.width,
        "heads": c.heads,
        "position_layers": c.position_layers,
        "content_layers": c.content_layers,
        "max_length": c.layout.max_length,
        "content_vocab": c.content_vocab,
        "position_vocab": c.position_vocab,
    }


def graph_dims(tr: StackedTransformer, image_size: int, z_channels: int, router: str) -> GraphDims:
    """GraphDims from the transformer plus the VAE facts it cannot know."""
    layout = tr.layout
    return GraphDims(
        image_size=image_size,
        z_channels=z_channels,
        coarse_hw=tuple(layout.coarse_hw),
        fine_hw=tuple(layout.fine_hw),
        router=router,
        **transformer_dims(tr),
    )


def empty_caches(tr: StackedTransformer, stack: str, batch: int, dtype=torch.float32) -> list[torch.Tensor]:
    """Zeroed static caches [B,H,L,D] for `stack` ("position" | "content"), in past_kv order."""
    c = tr.config
    layers = c.position_layers if stack == "position" else c.content_layers
    shape = (batch, c.heads, c.layout.max_length, c.head_dim)
    device = tr.pos_emb.device
    return [torch.zeros(shape, dtype=dtype, device=device) for _ in range(2 * layers)]
