"""Drive exported graphs with ONNX Runtime for checks, calibration and accuracy reports.

This is a test/calibration harness, not the runtime (dq_edge.runtime owns buffers, IO binding
and sampling): it runs a KNOWN token sequence step by step through the step graphs, writing
each step's new K/V rows into numpy caches at row `step` (all samples at the same step), and returns the logits of every
step. Torch-free (numpy + onnxruntime).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
    batch, length = content.shape
    act = np.float16 if activation_dtype(precision) == "float16" else np.float32
    shape = cache_shape(dims, batch)  # [B, H, L, D]
    pos_cache = {p.past: np.zeros(shape, act) for p in kv_pairs(dims, "position")}
    con_cache = {p.past: np.zeros(shape, act) for p in kv_pairs(dims, "content")}
    pos_logits, con_logits = [], []
    out = TeacherForced(np.empty(0), np.empty(0))
    for t in range(length - 1):
        step = np.full(batch, t, dtype=np.int64)  # every sample at token t
        feed = {"content": content[:, t], "position": position[:, t], "segment": segment[:, t], "step": step, **pos_cache}
        keep = record is not None and record(t)  # asked once per step: the predicate may count calls
        res = run(position_step, feed)
        if keep:
            out.position_feeds.append({k: v.copy() for k, v in feed.items()})
        _store_rows(dims, "position", pos_cache, res, t)
        pos_logits.append(res["position_logits"])
        cfeed = {"hidden": res["hidden"], "next_position": position[:, t + 1], "next_segment": segment[:, t + 1], "step": step, **con_cache}
        cres = run(content_step, cfeed)
        if keep:
            out.content_feeds.append({k: v.copy() for k, v in cfeed.items()})
        _store_rows(dims, "content", con_cache, cres, t)
        con_logits.append(cres["content_logits"])
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
