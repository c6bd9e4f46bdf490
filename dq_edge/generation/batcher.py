"""Continuous batching: a queue of image requests over one step-wise `Generator`.

    batcher = ContinuousBatcher(backend, num=64, batch=8, classes=..., params=SamplingParams(seed=0))
    tokens = batcher.run()          # TokenBatch [64, T], image i at row i

The generator holds `batch` sample rows. After every step, each row whose image finished
hands its tokens back and takes the next requested image at once (`Generator.admit`): that
row restarts at token 0 (the step graphs take a per-row `step`) while the others continue, so
no row idles until the longest image of a batch ends. Image i draws from its own random stream
seeded with `seed_of(i)` (default: params.seed + i): its tokens are exactly those of a batch of
one with that seed, whichever row or batch it ran in.

Not continuous (static batches, `static_generate`): the official sampler (it pads its streams
in lockstep) and completion of a prefix (one prefill for the whole batch).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np

from dq_edge.errors import InputError
from dq_edge.generation.backend import Backend
from dq_edge.generation.generator import Generator
from dq_edge.generation.loop import drive, open_generator
from dq_edge.generation.params import SamplingParams
from dq_edge.sequences import TokenBatch, pad_sequences
from dq_edge.tokens import TokenLayout

BATCHING = ("continuous", "static")


@dataclass(frozen=True)
class ImageRequest:
    index: int  # position in the run's output
    cls: int | None  # class id (None: unconditional model)
    seed: int  # seed of this image's random stream


def image_requests(num: int, classes, params: SamplingParams, seed_of: Callable[[int], int] | None = None) -> list[ImageRequest]:
    """`num` requests: image i with classes[i] (or None) and seed seed_of(i) (default seed + i)."""
    if int(num) != num or num < 1:
        raise InputError(f"the number of images must be >= 1, got {num}")
    if classes is not None and len(classes) != num:
        raise InputError(f"{len(classes)} classes for {num} images", "pass one class per image")
    seed_of = seed_of or (lambda i: params.seed + i)
    return [ImageRequest(i, None if classes is None else int(classes[i]), int(seed_of(i))) for i in range(num)]


def continuous_supported(params: SamplingParams, completing: bool = False) -> bool:
    """Whether a generation can refill rows (else it runs in static batches)."""
    return params.sampler != "official" and not completing


class ContinuousBatcher:
    """Generates every request with `batch` rows kept busy (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        requests: list[ImageRequest],
        batch: int,
        params: SamplingParams = SamplingParams(),
        layout: TokenLayout | None = None,
    ):
        if not continuous_supported(params):
            raise InputError("the official sampler runs whole batches", "use static batching or the dq-edge sampler")
        if int(batch) != batch or batch < 1:
            raise InputError(f"batch must be an integer >= 1, got {batch}")
        self._queue = deque(requests)
        first = [self._queue.popleft() for _ in range(min(batch, len(requests)))]
        classes = None if first[0].cls is None else [r.cls for r in first]
        self.generator = Generator(backend, len(first), classes, params, layout, seeds=[r.seed for r in first])
        self._row_request: list[ImageRequest | None] = list(first)

    def is_done(self) -> bool:
        return all(r is None for r in self._row_request)

    def step(self) -> list[tuple[ImageRequest, TokenBatch]]:
        """One token for every busy row; returns the images that finished in this step (their
        rows already hold the next requests)."""
        gen = self.generator
        if self.is_done():
            return []
        gen.step()
        finished = []
        for row in np.flatnonzero(gen.finished):
            request = self._row_request[row]
            if request is None:
                continue  # idle row: the queue ran dry
            finished.append((request, gen.sequence(row)))
            self._row_request[row] = None
            if self._queue:
                nxt = self._queue.popleft()
                gen.admit(int(row), nxt.cls, nxt.seed)
                self._row_request[row] = nxt
        return finished

    def busy_rows(self) -> int:
        return sum(r is not None for r in self._row_request)

    def run(
        self,
        progress: Callable[[int], None] | None = None,
        on_images: Callable[[list[tuple[ImageRequest, TokenBatch]]], None] | None = None,
    ) -> TokenBatch:
        """All requests' tokens, right-padded, in request order. `progress(n)` after every step
        (n = rows that got a token); `on_images(done)` with the images each step finished."""
        done: dict[int, TokenBatch] = {}
        while not self.is_done():
            busy = self.busy_rows()
            finished = self.step()
            if progress is not None:
                progress(busy)
            for request, tokens in finished:
                done[request.index] = tokens
            if finished and on_images is not None:
                on_images(finished)
        return pad_sequences(self.generator.layout, [done[i].sample(0) for i in sorted(done)])


def static_batches(requests: list[ImageRequest], batch: int) -> Iterator[list[ImageRequest]]:
    for lo in range(0, len(requests), batch):
        yield requests[lo : lo + batch]


def static_generate(
    backend: Backend,
    requests: list[ImageRequest],
    params: SamplingParams,
    layout: TokenLayout | None = None,
    prefix: TokenBatch | None = None,
    progress: Callable[[int], None] | None = None,
) -> TokenBatch:
    """One static batch of `requests` (every row until the longest image ends). The dq-edge
    sampler draws per image (the same tokens as continuous batching); the official sampler
    draws from one stream seeded with the first request's seed."""
    classes = None if requests[0].cls is None else [r.cls for r in requests]
    if params.sampler == "official":
        generator = open_generator(backend, len(requests), classes, replace(params, seed=requests[0].seed), layout)
    else:
        generator = Generator(backend, len(requests), classes, params, layout, seeds=[r.seed for r in requests])
    return drive(generator, prefix, progress)
