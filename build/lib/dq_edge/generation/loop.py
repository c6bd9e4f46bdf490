"""`generate_tokens`: a whole batch at once, as a loop over the step-wise generator."""

from __future__ import annotations

from typing import Callable

from dq_edge.generation.backend import Backend
from dq_edge.generation.generator import Generator
from dq_edge.generation.official import OfficialGenerator
from dq_edge.generation.params import SamplingParams
from dq_edge.sequences import TokenBatch
from dq_edge.tokens import TokenLayout


def open_generator(
    backend: Backend, batch: int, classes=None, params: SamplingParams = SamplingParams(), layout: TokenLayout | None = None
) -> Generator:
    """The generator of `params.sampler` ("dq-edge" or "official") over `backend`."""
    params.validate()
    kind = OfficialGenerator if params.sampler == "official" else Generator
    return kind(backend, batch, classes, params, layout)


def generate_tokens(
    backend: Backend,
    layout: TokenLayout,
    batch: int,
    classes=None,
    params: SamplingParams = SamplingParams(),
    prefix: TokenBatch | None = None,
    progress: Callable[[int], None] | None = None,
) -> TokenBatch:
    """Generate `batch` token sequences (right-padded TokenBatch). `progress(n)` is called after
    every step with n = the number of samples that received a token in that step."""
    generator = open_generator(backend, batch, classes, params, layout)
    if prefix is not None:
        generator.append_prefix(prefix)
    while not generator.is_done():
        n = generator.step()
        if progress is not None:
            progress(n)
    return generator.sequences()
