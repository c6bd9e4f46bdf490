"""The backend protocol: what the generator (dq_edge.generation.generator) needs from a device.

A backend owns its buffers (allocated once, for `max_batch`) and executes graphs; the loop
owns tokens, masks and sampling. KV caches and the position stack's hidden state stay inside
the backend (device-resident on GPUs); only logits (small) and final images cross to the host.

Implementations: ONNX Runtime (`dq_edge.runtime.ort_backend`), TensorRT
(`dq_edge.engines.trt_backend`) and the torch reference (`dq_edge.models.torch_backend`, used
by `dq_edge.models.generate`, in dq_edge/models/torch_generate.py), so every backend is checked against the same generator.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from dq_edge.graph_io import GraphDims
from dq_edge.tokens import TokenLayout


@runtime_checkable
class Backend(Protocol):
    name: str  # e.g. "ort-cpu", "trt", "torch"
    precision: str  # "fp32" | "fp16" | "int8"
    max_batch: int
    dims: GraphDims
    layout: TokenLayout

    def begin(self, batch: int) -> None:
        """Prepare for a new generation of `batch` samples (<= max_batch): bind views of the
        preallocated buffers and zero the KV caches. No allocation happens after this call."""

    def position_step(
        self, content: np.ndarray, position: np.ndarray, segment: np.ndarray, step: int
    ) -> np.ndarray:
        """Token `step` of every sample (int64 [batch] each) through the position stack.
        Stores its K/V at cache row `step`, keeps the hidden state on the device and returns
        position logits float32 [batch, position_vocab] (row predicts position[step+1])."""

    def content_step(self, next_position: np.ndarray, next_segment: np.ndarray, step: int) -> np.ndarray:
        """Content stack for row `step` given position[step+1] (int64 [batch]); stores K/V at
        row `step`; returns content logits float32 [batch, content_vocab]."""

    def prefill(self, content: np.ndarray, position: np.ndarray, segment: np.ndarray) -> np.ndarray:
        """T known tokens (int64 [batch, T], 2 <= T <= L): fills cache rows 0..T-1 of the
        position stack and 0..T-2 of the content stack, keeps the hidden state of row T-1 and
        returns its position logits float32 [batch, position_vocab]. The loop continues with
        `content_step(..., step=T-1)`."""

    def encode(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """image float32 [b,3,H,W] in [-1,1] -> (grain int64 [b,Hc,Wc], codes int64 [b,Hf,Wf])."""

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes int64 [b,Hf,Wf] -> image float32 [b,3,H,W] (unclamped)."""

    def stage_times(self) -> dict:
        """Bounded statistics of each stage's seconds per call since construction or the last
        reset (encoder, dgc, position_step, content_step, prefill, decoder), in the runtime's
        format (dq_edge.runtime.timing.StageStats); measured with device events where the device
        has them. A copy: later calls do not change it. The generator itself never reads it."""

    def reset_stage_times(self) -> None:
        """Start the statistics afresh (a benchmark does this after its warmup calls)."""
