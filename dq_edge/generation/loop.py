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
    backend: Backend,
    batch: int,
    classes=None,
    params: SamplingParams = SamplingParams(),
    layout: TokenLayout | None = None,
    per_image_seeds: bool = False,
) -> Generator:
    """The generator of `params.sampler` ("dq-edge" or "official") over `backend`. With
    `per_image_seeds`, sample i of the dq-edge sampler draws from its own stream seeded with
    params.seed + i (the streams of `dq_edge.generation.batcher`); the official sampler always
    draws from one stream."""
    params.validate()
    if params.sampler == "official":
        return OfficialGenerator(backend, batch, classes, params, layout)
    seeds = [params.seed + i for i in range(batch)] if per_image_seeds else None
    return Generator(backend, batch, classes, params, layout, seeds=seeds)


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
    return drive(open_generator(backend, batch, classes, params, layout), prefix, progress)


def drive(generator: Generator, prefix: TokenBatch | None = None, progress: Callable[[int], None] | None = None) -> TokenBatch:
    """Run a fresh generator to the end (after its optional prefix); its sequences."""
    if prefix is not None:
        generator.append_prefix(prefix)
    while not generator.is_done():
        n = generator.step()
        if progress is not None:
            progress(n)
    return generator.sequences()
