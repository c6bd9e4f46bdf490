"""The one autoregressive loop: every backend (torch, ONNX Runtime, TensorRT) runs through it.

Per step t (the token at index t is known for every sample):
  position_step(token t)  -> logits for position[t+1]  -> masks + sampling (or forced)
  content_step(position[t+1]) -> logits for content[t+1] -> sampling (or forced)
Coarse to fine: the coarse stream ends with its EOS, then the fine start token is forced, then
the fine stream runs until its EOS (docs/design.md §1-2, masks in dq_edge.runtime.masks). Samples
stop independently; finished rows are fed PAD tokens whose outputs are ignored.

Classifier-free guidance runs 2B rows through the backend: rows 0..B-1 with the sample's
class, rows B..2B-1 with the null class and otherwise the same tokens; both halves' logits are
mixed before sampling. An image-completion `prefix` goes through `backend.prefill` (up to the
shortest prefix) and the remaining prefix tokens are forced step by step; the masks start from
the prefix's state.

Memory: token arrays [rows, L] and the mask state are allocated once per call; a step only
allocates small temporaries of the size of the logits ([B, V] float64 for the softmax and
the top-k/top-p filters) and [B] index vectors.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from dq_edge.errors import DQEdgeError, InputError
from dq_edge.runtime.backend import Backend
from dq_edge.runtime.masks import FINE_START, PositionMasks, content_code_mask
from dq_edge.runtime.sampling import SamplingParams, make_rng, mix_guidance, sample_ids
from dq_edge.sequences import TokenBatch
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout

__all__ = ["SamplingParams", "TokenBatch", "generate_tokens", "check_classes"]


def check_classes(layout: TokenLayout, batch: int, classes: list[int] | np.ndarray | None) -> np.ndarray | None:
    """Validated class ids int64 [batch] (None for unconditional models)."""
    if layout.n_classes == 0:
        if classes is not None:
            raise InputError("this model is unconditional; it takes no class", "omit the class")
        return None
    if classes is None:
        raise InputError(f"this model is class-conditional ({layout.n_classes} classes)", "pass a class per sample")
    cls = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(cls) != batch:
        raise InputError(f"{len(cls)} classes for {batch} samples", "pass one class per sample")
    bad = cls[(cls < 0) | (cls >= layout.n_classes)]
    if len(bad):
        raise InputError(
            f"class id {int(bad[0])} is out of range for this model (0..{layout.n_classes - 1})",
            f"pass a class between 0 and {layout.n_classes - 1}",
        )
    return cls


class _Tokens:
    """Token arrays of all backend rows (cond rows first, then the null-class mirror rows)."""

    def __init__(self, layout: TokenLayout, batch: int, row_classes: np.ndarray | None, guided: bool):
        self.layout, self.B, self.guided = layout, batch, guided
        rows = batch * (2 if guided else 1)
        L = layout.max_length
        self.content = np.full((rows, L), layout.content_pad, dtype=np.int64)
        self.position = np.full((rows, L), layout.position_pad(SEGMENT_FINE), dtype=np.int64)
        self.segment = np.full((rows, L), SEGMENT_FINE, dtype=np.int64)
        offset = np.zeros(rows, dtype=np.int64) if row_classes is None else row_classes
        # start ids of every row: content, coarse position, fine position
        self.start_content = layout.content_start(0) + offset
        self.start_coarse = layout.position_start(SEGMENT_COARSE, 0) + offset
        self.start_fine = layout.position_start(SEGMENT_FINE, 0) + offset
        self.content[:, 0] = self.start_content
        self.position[:, 0] = self.start_coarse
        self.segment[:, 0] = SEGMENT_COARSE

    def is_start(self, position: np.ndarray, segment: np.ndarray) -> np.ndarray:
        grid = np.where(segment == SEGMENT_COARSE, self.layout.n_coarse, self.layout.n_fine)
        return position >= grid + 2

    def set_position(self, t: int, position: np.ndarray, segment: np.ndarray, active: np.ndarray) -> None:
        """Write position/segment of token t for the active cond rows and their mirrors."""
        B = self.B
        start = self.is_start(position, segment)
        for half in range(2 if self.guided else 1):
            rows = slice(half * B, (half + 1) * B)
            own_start = np.where(segment == SEGMENT_COARSE, self.start_coarse[rows], self.start_fine[rows])
            self.position[rows, t] = np.where(active, np.where(start, own_start, position), self.position[rows, t])
            self.segment[rows, t] = np.where(active, segment, self.segment[rows, t])

    def set_content(self, t: int, content: np.ndarray, active: np.ndarray) -> None:
        B = self.B
        start = self.is_start(self.position[:B, t], self.segment[:B, t])
        for half in range(2 if self.guided else 1):
            rows = slice(half * B, (half + 1) * B)
            value = np.where(start, self.start_content[rows], content)
            self.content[rows, t] = np.where(active, value, self.content[rows, t])


def _guided(logits: np.ndarray, B: int, scale: float | None) -> np.ndarray:
    return logits if scale is None else mix_guidance(logits[:B], logits[B:], scale)


def _check_segment(given: np.ndarray, expected: np.ndarray, rows: np.ndarray) -> None:
    if (given[rows] != expected[rows]).any():
        raise InputError(
            "a prefix token has the wrong segment for its place in the sequence", "build prefixes with dq_edge.sequences"
        )


def _check_prefix(layout: TokenLayout, prefix: TokenBatch, batch: int, toks: _Tokens) -> None:
    if prefix.batch != batch:
        raise InputError(f"prefix has {prefix.batch} rows for {batch} samples", "pass one prefix row per sample")
    lengths = prefix.lengths
    if lengths.min() < 2 or lengths.max() > layout.max_length - 1:
        raise InputError(
            f"prefix lengths must be 2..{layout.max_length - 1}, got {int(lengths.min())}..{int(lengths.max())}",
            "keep at least the start token and one more, and leave something to generate",
        )
    first = (prefix.content[:, 0], prefix.position[:, 0], prefix.segment[:, 0])
    want = (toks.start_content[:batch], toks.start_coarse[:batch], np.zeros(batch, np.int64))
    if any(not np.array_equal(a, b) for a, b in zip(first, want)):
        raise InputError("prefix does not begin with the start token of its sample's class", "build it with dq_edge.sequences")


def generate_tokens(
    backend: Backend,
    layout: TokenLayout,
    batch: int,
    classes: list[int] | np.ndarray | None = None,
    params: SamplingParams = SamplingParams(),
    prefix: TokenBatch | None = None,
    progress: Callable[[int], None] | None = None,
) -> TokenBatch:
    """Generate `batch` token sequences (right-padded TokenBatch). `progress(n)` is called after
    every step with n = the number of samples that received a token in that step."""
    params.validate()
    if batch < 1:
        raise InputError(f"batch must be >= 1, got {batch}")
    cls = check_classes(layout, batch, classes)
    guided = params.cfg_scale is not None
    if guided and layout.null_class_id is None:
        raise InputError(
            "classifier-free guidance needs a class-conditional model trained with a null class",
            "omit --cfg-scale (or train with class dropout)",
        )
    rows = batch * (2 if guided else 1)
    if rows > backend.max_batch:
        raise InputError(
            f"{rows} rows exceed the backend's maximum batch {backend.max_batch}",
            "lower the batch size" + (" (guidance doubles the rows)" if guided else ""),
        )
    row_classes = None if cls is None else (np.concatenate([cls, np.full(batch, layout.null_class_id)]) if guided else cls)
    toks = _Tokens(layout, batch, row_classes, guided)
    masks = PositionMasks(layout, batch, backend.dims.position_vocab, params.fixed_fine_positions)
    code_mask = content_code_mask(layout, backend.dims.content_vocab)
    rng = make_rng(params.seed)
    scale = params.cfg_scale
    lengths = np.zeros(batch, dtype=np.int64)
    L = layout.max_length
    K = layout.n_codes

    backend.begin(rows)
    if prefix is None:
        prefix_len = np.ones(batch, dtype=np.int64)
        t = 0
        p_logits = backend.position_step(toks.content[:, 0], toks.position[:, 0], toks.segment[:, 0], 0)
    else:
        _check_prefix(layout, prefix, batch, toks)
        prefix_len = prefix.lengths.astype(np.int64)
        T0 = int(prefix_len.min())
        everyone = np.ones(batch, dtype=bool)
        for j in range(1, T0):
            _check_segment(prefix.segment[:, j], masks.next_segment(), everyone & ~masks.done)
            masks.advance(prefix.position[:, j], everyone)
            toks.set_position(j, prefix.position[:, j], prefix.segment[:, j], everyone)
            toks.set_content(j, prefix.content[:, j], everyone)
        if masks.done.any():
            raise InputError("a prefix is already a complete sequence", "keep fewer tokens")
        t = T0 - 1
        p_logits = backend.prefill(toks.content[:, :T0], toks.position[:, :T0], toks.segment[:, :T0])

    while True:
        if t + 1 >= L:
            raise DQEdgeError(f"generation ran past the longest legal sequence ({L} tokens)", "report this as a bug")
        active = ~masks.done
        forced = t + 1 < prefix_len
        segment = masks.next_segment()
        position = sample_ids(
            _guided(p_logits, batch, scale), masks.allowed_positions(), rng,
            params.temperature, params.top_k_pos, params.top_p_pos, params.greedy,
        )
        position = np.where(masks.phase == FINE_START, toks.start_fine[:batch], position)
        if forced.any():
            position = np.where(forced, prefix.position[:, min(t + 1, prefix.position.shape[1] - 1)], position)
            _check_segment(prefix.segment[:, min(t + 1, prefix.segment.shape[1] - 1)], segment, forced & active)
        masks.advance(position, active)
        toks.set_position(t + 1, position, segment, active)

        c_logits = backend.content_step(toks.position[:, t + 1], toks.segment[:, t + 1], t)
        content = sample_ids(
            _guided(c_logits, batch, scale), code_mask, rng, params.temperature, params.top_k, params.top_p, params.greedy
        )
        grid = np.where(segment == SEGMENT_COARSE, layout.n_coarse, layout.n_fine)
        content = np.where(position < grid, content, K + 1)  # EOS positions carry the content EOS
        if forced.any():
            content = np.where(forced, prefix.content[:, min(t + 1, prefix.content.shape[1] - 1)], content)
        toks.set_content(t + 1, content, active)  # start positions get their start content

        finished = active & masks.done
        lengths[finished] = t + 2
        if progress is not None:
            progress(int(active.sum()))
        if masks.done.all():
            break
        t += 1
        p_logits = backend.position_step(toks.content[:, t], toks.position[:, t], toks.segment[:, t], t)

    T = int(lengths.max())
    return TokenBatch(
        toks.content[:batch, :T].copy(), toks.position[:batch, :T].copy(), toks.segment[:batch, :T].copy(), lengths
    )
