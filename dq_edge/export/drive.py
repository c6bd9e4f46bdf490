"""Drive exported graphs with ONNX Runtime for checks, calibration and accuracy reports.

This is a test/calibration harness, not the runtime (dq_edge.runtime owns buffers, IO binding
and sampling): it runs a KNOWN token sequence step by step through the step graphs, writing
each step's new K/V rows into numpy caches at row `step` (all samples at the same step), and
returns the logits of every step. Torch-free (numpy + onnxruntime).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from dq_edge.graph_io import GraphDims, activation_dtype, cache_shape, kv_pairs, store_rows
from dq_edge.ort_import import import_onnxruntime
from dq_edge.tokens import TokenLayout

ort = import_onnxruntime()

Feed = dict[str, np.ndarray]


def cpu_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run(session: ort.InferenceSession, feed: Feed) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed)))


@dataclass
class TeacherForced:
    """Logits of every step: row t predicts position[t+1] / content[t+1]."""

    position_logits: np.ndarray  # [B, T-1, Vp] float32
    content_logits: np.ndarray  # [B, T-1, Vc] float32
    position_feeds: list[Feed] = field(default_factory=list)
    content_feeds: list[Feed] = field(default_factory=list)
    # the caches after the last step: past_key.i / past_value.i -> [B, H, L, D]
    position_cache: dict[str, np.ndarray] = field(default_factory=dict)
    content_cache: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class StepIO:
    """One teacher-forced step: the feeds reference the live caches, so they hold this step's
    inputs only until the generator advances (copy what must outlive it)."""

    step: int
    position_feed: Feed
    position_out: dict[str, np.ndarray]
    content_feed: Feed | None
    content_out: dict[str, np.ndarray] | None


def empty_caches(dims: GraphDims, precision: str, batch: int, stack: str) -> dict[str, np.ndarray]:
    """Zeroed caches of one stack, past input name -> [B, H, L, D]."""
    act = np.float16 if activation_dtype(precision) == "float16" else np.float32
    return {p.past: np.zeros(cache_shape(dims, batch), act) for p in kv_pairs(dims, stack)}


def position_feed(cache: dict[str, np.ndarray], content, position, segment, t: int) -> Feed:
    """Inputs of the position step at index `t` of tokens [B, T] with the given caches."""
    step = np.full(content.shape[0], t, dtype=np.int64)  # [B]: every sample at token t
    return {"content": content[:, t], "position": position[:, t], "segment": segment[:, t], "step": step, **cache}


def content_feed(cache: dict[str, np.ndarray], hidden: np.ndarray, position, segment, t: int) -> Feed:
    """Inputs of the content step at index `t`: the position stack's hidden state there, and
    the position / segment of token t+1 (the one whose content it predicts)."""
    step = np.full(hidden.shape[0], t, dtype=np.int64)  # [B]: every sample at token t
    return {"hidden": hidden, "next_position": position[:, t + 1], "next_segment": segment[:, t + 1], "step": step, **cache}


def prefill_caches(prefill: ort.InferenceSession, dims: GraphDims, content, position, segment) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Both stacks' caches [B, H, L, D] of a whole known sequence [B, T] from ONE prefill call:
    position rows 0..T-1, content rows 0..T-2. A step at index t masks rows > t, so these caches
    give every step t the inputs it would see after t teacher-forced steps (rows > t never count)."""
    out = run(prefill, {"content": content, "position": position, "segment": segment})
    caches = []
    for stack in ("position", "content"):
        cache = empty_caches(dims, "fp32", content.shape[0], stack)
        for pair in kv_pairs(dims, stack):
            store_rows(cache[pair.past], out[pair.prefill_present], 0)  # [B, H, prefill_rows, D] from row 0
        caches.append(cache)
    return caches[0], caches[1]


def step_through(
    dims: GraphDims,
    position_step: ort.InferenceSession,
    content_step: ort.InferenceSession | None,
    pos_cache: dict[str, np.ndarray],
    con_cache: dict[str, np.ndarray],
    content: np.ndarray,
    position: np.ndarray,
    segment: np.ndarray,
) -> Iterator[StepIO]:
    """Run tokens [B, T] (int64) through the step graphs, one StepIO per step, yielded before
    the step's new K/V rows are stored. `content_step` None: the position stack only (its
    caches do not depend on the content stack)."""
    for t in range(content.shape[1] - 1):
        feed = position_feed(pos_cache, content, position, segment, t)
        res = run(position_step, feed)
        cfeed = cres = None
        if content_step is not None:
            cfeed = content_feed(con_cache, res["hidden"], position, segment, t)
            cres = run(content_step, cfeed)
        yield StepIO(t, feed, res, cfeed, cres)
        _store_rows(dims, "position", pos_cache, res, t)
        if cres is not None:
            _store_rows(dims, "content", con_cache, cres, t)


def teacher_forced_steps(
    position_step: ort.InferenceSession,
    content_step: ort.InferenceSession,
    dims: GraphDims,
    precision: str,
    content: np.ndarray,
    position: np.ndarray,
    segment: np.ndarray,
    record: Callable[[int], bool] | None = None,
) -> TeacherForced:
    """Run tokens [B, T] (int64) through the step graphs; `record(step)` chooses which steps'
    input feeds are kept (for int8 calibration)."""
    batch = content.shape[0]
    pos_cache = empty_caches(dims, precision, batch, "position")
    con_cache = empty_caches(dims, precision, batch, "content")
    pos_logits, con_logits = [], []
    out = TeacherForced(np.empty(0), np.empty(0))
    for io in step_through(dims, position_step, content_step, pos_cache, con_cache, content, position, segment):
        if record is not None and record(io.step):  # asked once per step: the predicate may count calls
            out.position_feeds.append({k: v.copy() for k, v in io.position_feed.items()})
            out.content_feeds.append({k: v.copy() for k, v in io.content_feed.items()})
        pos_logits.append(io.position_out["position_logits"])
        con_logits.append(io.content_out["content_logits"])
    out.position_cache, out.content_cache = pos_cache, con_cache
    out.position_logits = np.stack(pos_logits, axis=1)
    out.content_logits = np.stack(con_logits, axis=1)
    return out


def _store_rows(dims: GraphDims, stack: str, cache: dict[str, np.ndarray], outputs: dict[str, np.ndarray], step: int) -> None:
    for pair in kv_pairs(dims, stack):
        store_rows(cache[pair.past], outputs[pair.present], step)  # [B, H, 1, D] at row `step`


def to_int64(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(a, dtype=np.int64) for a in arrays)


def token_sequences(grain: np.ndarray, codes: np.ndarray, layout: TokenLayout) -> tuple[np.ndarray, ...]:
    """Grain + code maps -> right-padded (content, position, segment) [N, T] int64 + lengths [N],
    via dq_edge.sequences; class models get class 0 as start token."""
    from dq_edge.sequences import encode_batch

    classes = np.zeros(len(grain), np.int64) if layout.n_classes else None
    seq = encode_batch(layout, grain, codes, classes)
    return to_int64(seq.content, seq.position, seq.segment) + (np.asarray(seq.lengths, dtype=np.int64),)
