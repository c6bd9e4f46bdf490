"""The official sampling algorithm's cost: full-prefix recompute every token, torch eager.

The official sampler (models/stage2_dynamic/dqtransformer_*_entropy.py, `sample_from_scratch`)
keeps no cache: to produce token t it runs the position transformer over the whole prefix
(t tokens), applies the position head to every row and keeps the last, samples a position, then
runs the content transformer over the whole prefix again (fed with the position stack's hidden
states plus the embeddings of the next positions), applies the content head to every row and
keeps the last. One "step" here is exactly that pair of whole-prefix passes, on our
StackedTransformer with the same weights as every other configuration.
"""

from __future__ import annotations

import numpy as np
import torch

from dq_edge.bench.stages import step_tokens
from dq_edge.tokens import TokenLayout


def prefix_tokens(layout: TokenLayout, batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random in-range (content, position, segment) [batch, length] with the segment switching
    from coarse to fine where a real sequence would; values never change the cost."""
    rows = [step_tokens(layout, batch, t, seed) for t in range(length)]
    return tuple(torch.from_numpy(np.stack([r[k] for r in rows], axis=1)) for k in ("content", "position", "segment"))


class FullPrefixStep:
    """Callable that performs one official-algorithm step at a fixed prefix length."""

    def __init__(self, tr: torch.nn.Module, batch: int, prefix: int, seed: int = 0):
        content, position, segment = prefix_tokens(tr.layout, batch, prefix + 1, seed)
        self.tr = tr
        self.inputs = (content[:, :prefix], position[:, :prefix], segment[:, :prefix])
        self.next = (position[:, 1:], segment[:, 1:])  # [B, prefix]: the sampled next positions

    @torch.inference_mode()
    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        tr = self.tr
        hidden, _ = tr.position_stack(*self.inputs)  # [B, p, C]
        position_logits = tr.position_head(hidden)[:, -1]  # head over every row, as upstream
        content_hidden, _ = tr.content_stack(hidden, *self.next)
        content_logits = tr.content_head(content_hidden)[:, -1]
        return position_logits, content_logits
