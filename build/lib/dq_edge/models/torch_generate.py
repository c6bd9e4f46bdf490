"""Torch reference generation: the generator of dq_edge.generation on the torch backend.

    from dq_edge.models import generate
    out = generate(tr, 4, classes=[1, 2, 3, 4], seed=0, top_k=100)
    out.content, out.position, out.segment   # LongTensor [B, T], right-padded
    out.grain, out.codes                      # LongTensor [B, Hc, Wc] / [B, Hf, Wf]
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import torch

from dq_edge.generation import SamplingParams, final_code_maps, generate_tokens
from dq_edge.generation.guidance import guided_rows
from dq_edge.models.torch_backend import TorchBackend
from dq_edge.models.transformer import StackedTransformer
from dq_edge.sequences import TokenBatch

_SAMPLING_FIELDS = {f.name for f in fields(SamplingParams)}


@dataclass
class GenerateOutput:
    content: torch.Tensor
    position: torch.Tensor
    segment: torch.Tensor
    lengths: torch.Tensor
    grain: torch.Tensor
    codes: torch.Tensor
    tokens: TokenBatch  # the same tokens as numpy arrays


def _class_list(classes, batch_size: int) -> list[int] | None:
    if classes is None:
        return None
    if isinstance(classes, (int, np.integer)):
        return [int(classes)] * batch_size
    if isinstance(classes, torch.Tensor):
        classes = classes.reshape(-1).tolist()
    return [int(c) for c in classes]


def generate(
    tr: StackedTransformer,
    batch_size: int,
    classes=None,
    backend: TorchBackend | None = None,
    progress: Callable[[int], None] | None = None,
    **sampling,
) -> GenerateOutput:
    """`sampling`: any field of `dq_edge.generation.SamplingParams` (seed, temperature, top_k,
    top_p, top_k_pos, top_p_pos, greedy, cfg_scale, fixed_fine_positions, sampler)."""
    unknown = sorted(set(sampling) - _SAMPLING_FIELDS)
    if unknown:
        raise TypeError(f"generate() got unknown sampling options {unknown}")
    params = SamplingParams(**sampling)
    if backend is None:
        backend = TorchBackend(tr, max_batch=guided_rows(max(1, batch_size), params.cfg_scale is not None))
    tokens = generate_tokens(backend, tr.layout, batch_size, _class_list(classes, batch_size), params, progress=progress)
    grain, codes = final_code_maps(tr.layout, tokens, params.sampler)
    t = torch.from_numpy
    return GenerateOutput(
        t(tokens.content), t(tokens.position), t(tokens.segment), t(tokens.lengths), t(grain), t(codes), tokens
    )
