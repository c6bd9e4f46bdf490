"""Torch reference generation: the shared runtime loop on the torch backend.

    out = generate(tr, 4, classes=[1, 2, 3, 4], seed=0, top_k=100)
    out.content, out.position, out.segment   # LongTensor [B, T], right-padded
    out.grain, out.codes                      # LongTensor [B, Hc, Wc] / [B, Hf, Wf]
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from dq_edge.models.torch_backend import TorchBackend
from dq_edge.models.transformer import StackedTransformer
from dq_edge.runtime.loop import SamplingParams, generate_tokens
from dq_edge.sequences import TokenBatch, decode_batch


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
    greedy: bool = False,
    fixed_fine_positions: bool = False,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    top_k_pos: int | None = None,
    top_p_pos: float | None = None,
    cfg_scale: float | None = None,
    backend: TorchBackend | None = None,
    progress: Callable[[int], None] | None = None,
) -> GenerateOutput:
    params = SamplingParams(
        temperature=temperature, top_k=top_k, top_p=top_p, top_k_pos=top_k_pos, top_p_pos=top_p_pos,
        greedy=greedy, seed=seed, cfg_scale=cfg_scale, fixed_fine_positions=fixed_fine_positions,
    )
    if backend is None:
        backend = TorchBackend(tr, max_batch=max(1, batch_size) * (2 if cfg_scale is not None else 1))
    tokens = generate_tokens(backend, tr.layout, batch_size, _class_list(classes, batch_size), params, progress=progress)
    grain, codes = decode_batch(tr.layout, tokens)
    t = torch.from_numpy
    return GenerateOutput(
        t(tokens.content), t(tokens.position), t(tokens.segment), t(tokens.lengths), t(grain), t(codes), tokens
    )


class _CallableModule(types.ModuleType):
    """Python binds the package attribute `dq_edge.models.generate` to this submodule once it is
    imported, so `from dq_edge.models import generate` yields the module; calling it runs
    `generate(...)`, keeping both `generate(tr, 4)` and `generate.generate(tr, 4)` working."""

    def __call__(self, *args, **kwargs) -> GenerateOutput:
        return generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
