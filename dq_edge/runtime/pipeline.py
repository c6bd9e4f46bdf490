"""Images from an opened backend: the shared token loop in chunks, decode, optional completion.

Torch-free. `dq-edge run` (dq_edge/cli/run.py) and the quickstart drive this; the benchmarks
drive the same `generate_tokens` loop directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dq_edge.errors import InputError
from dq_edge.generation import SamplingParams, check_classes, final_code_maps, plan_batch
from dq_edge.generation.backend import Backend
from dq_edge.generation.batcher import (
    BATCHING, ContinuousBatcher, continuous_supported, image_requests, static_batches, static_generate,
)
from dq_edge.sequences import TokenBatch, encode_tokens, pad_sequences
from dq_edge.tokens import TokenLayout


@dataclass(frozen=True)
class RunRequest:
    num: int
    batch: int
    classes: tuple[int, ...] | None  # one class id per image; None for unconditional models
    params: SamplingParams
    complete_image: np.ndarray | None = None  # float32 [1, 3, H, W] in [-1, 1]
    keep_ratio: float = 0.5
    batching: str = "continuous"  # "continuous" | "static" (dq_edge.generation.batcher)


@dataclass
class RunResult:
    images: np.ndarray  # float32 [N, 3, H, W], unclamped decoder output
    tokens: TokenBatch  # [N, T] right-padded
    grains: np.ndarray  # int64 [N, Hc, Wc], 1 = fine
    codes: np.ndarray  # int64 [N, Hf, Wf]
    wall_seconds: float
    prefix_length: int | None = None  # tokens kept from the --complete image
    batching: str = "static"  # how the run actually batched (continuous falls back to static)

    @property
    def code_counts(self) -> np.ndarray:
        """Code tokens per image: sequence length minus the 4 start/EOS tokens."""
        return self.tokens.lengths - 4


def resolve_classes(layout: TokenLayout, num: int, classes: list[int] | None) -> tuple[int, ...] | None:
    """One class per image: `classes` cycled over `num` images (all classes in turn when a
    class-conditional model gets none), validated against the model's classes."""
    chosen = list(classes or [])
    if layout.n_classes and not chosen:
        chosen = list(range(layout.n_classes))  # a class-conditional model without a class: cycle all
    cls = check_classes(layout, chosen or None)
    return None if cls is None else tuple(int(cls[i % len(cls)]) for i in range(num))


def check_request(backend: Backend, layout: TokenLayout, request: RunRequest) -> None:
    """Everything a run can check before the first token (the generator checks the same)."""
    if int(request.num) != request.num or request.num < 1:
        raise InputError(f"the number of images must be >= 1, got {request.num}")
    if request.batching not in BATCHING:
        raise InputError(f"unknown batching {request.batching!r}", f"choose one of {', '.join(BATCHING)}")
    first = None if request.classes is None else list(request.classes[: request.batch])
    plan_batch(layout, min(request.batch, request.num), first, request.params, backend.max_batch)
    if request.complete_image is not None:
        if not 0.0 < request.keep_ratio <= 1.0:
            raise InputError(f"the kept share of the image's tokens must be in (0, 1], got {request.keep_ratio}")
        if request.params.sampler == "official":
            raise InputError("the official sampler cannot complete an image", "use the dq-edge sampler for completion")


def completion_prefix(
    layout: TokenLayout, grain: np.ndarray, codes: np.ndarray, keep_ratio: float, classes: list[int | None]
) -> TokenBatch:
    """The encoded image's first round(R * length) tokens for every sample (each with its own
    class tokens): at least the 2 the prefill graph needs, at most all but the final EOS so
    something is left to generate."""
    rows = []
    for cls in classes:
        content, position, segment = encode_tokens(layout, grain, codes, cls)
        keep = int(np.clip(round(keep_ratio * len(content)), 2, len(content) - 1))
        rows.append((content[:keep], position[:keep], segment[:keep]))
    return pad_sequences(layout, rows)


def generate_images(
    backend: Backend,
    layout: TokenLayout,
    request: RunRequest,
    on_tokens: Callable[[int], None] | None = None,
    on_images: Callable[[int], None] | None = None,
) -> RunResult:
    """Generate `request.num` images on `request.batch` rows; image i draws from seed + i.

    Continuous batching (the default) refills a row as soon as its image ends; completion and
    the official sampler run static batches (dq_edge.generation.batcher). The dq-edge sampler
    gives the same tokens either way."""
    check_request(backend, layout, request)
    start = time.perf_counter()
    params = request.params
    requests = image_requests(request.num, request.classes, params)
    encoded = None
    if request.complete_image is not None:
        encoded = backend.encode(request.complete_image)  # grain [1, Hc, Wc], codes [1, Hf, Wf]
    prefix_len = None
    continuous = request.batching == "continuous" and continuous_supported(params, completing=encoded is not None)
    if continuous:
        tokens = ContinuousBatcher(backend, requests, request.batch, params, layout).run(progress=on_tokens)
    else:
        parts = []
        for chunk in static_batches(requests, request.batch):
            prefix = None
            if encoded is not None:
                classes = [r.cls for r in chunk]
                prefix = completion_prefix(layout, encoded[0][0], encoded[1][0], request.keep_ratio, classes)
                prefix_len = int(prefix.lengths[0])
            part = static_generate(backend, chunk, params, layout, prefix, on_tokens)
            parts += [part.sample(j) for j in range(part.batch)]
        tokens = pad_sequences(layout, parts)
    grains, codes, images = [], [], []
    for lo in range(0, request.num, request.batch):  # decode in chunks of the batch
        part = pad_sequences(layout, [tokens.sample(j) for j in range(lo, min(lo + request.batch, request.num))])
        grain, code = final_code_maps(layout, part, params.sampler)
        images.append(backend.decode(code))
        grains.append(grain)
        codes.append(code)
        if on_images is not None:
            on_images(part.batch)
    return RunResult(
        images=np.concatenate(images),
        tokens=tokens,
        grains=np.concatenate(grains),
        codes=np.concatenate(codes),
        wall_seconds=time.perf_counter() - start,
        prefix_length=prefix_len,
        batching="continuous" if continuous else "static",
    )
