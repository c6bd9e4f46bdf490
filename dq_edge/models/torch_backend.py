"""The torch reference backend: the KV-step modules (dq_edge.models.kv_steps) behind the
`dq_edge.generation.backend.Backend` protocol, so torch generation uses the same loop as ONNX
Runtime and TensorRT. Caches [max_batch, H, L, D] are allocated once; `begin` zeroes views. A
step sees the first R rows of each cache (R: the smallest length bucket holding every row's
prefix, graph_io.cache_buckets), as the ONNX Runtime backend binds them.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from dq_edge.errors import InputError
from dq_edge.graph_io import GraphDims, bucket_for, cache_buckets, kv_pairs, prefill_rows, step_rows, store_rows
from dq_edge.models.kv_steps import ContentStep, PositionStep, Prefill, empty_caches, graph_dims
from dq_edge.models.transformer import StackedTransformer
from dq_edge.runtime.timing import StageStats, StageTimes


class TorchBackend:
    name = "torch"
    precision = "fp32"

    def __init__(self, tr: StackedTransformer, vae=None, max_batch: int = 64, smallest_bucket: int | None = 64):
        self.tr = tr.eval()
        self.vae = None if vae is None else vae.eval()
        self.layout = tr.layout
        self.max_batch = max_batch
        vc = getattr(vae, "config", None)
        self.dims: GraphDims = graph_dims(
            tr,
            image_size=getattr(vc, "image_size", 0),
            z_channels=getattr(vc, "z_channels", 0),
            router=getattr(vc, "router", "none"),
        )
        self._position, self._content, self._prefill = PositionStep(tr), ContentStep(tr), Prefill(tr)
        L = self.dims.max_length
        self.buckets = (L,) if not smallest_bucket else cache_buckets(L, smallest_bucket)
        self._pcache_full = empty_caches(tr, "position", max_batch)
        self._ccache_full = empty_caches(tr, "content", max_batch)
        self._hidden: torch.Tensor | None = None
        self._times = StageTimes()
        self.begin(1)

    def begin(self, batch: int) -> None:
        if not 1 <= batch <= self.max_batch:
            raise InputError(f"batch {batch} is outside 1..{self.max_batch}", "lower the batch size")
        self.batch = batch
        self._pcache = [c[:batch] for c in self._pcache_full]
        self._ccache = [c[:batch] for c in self._ccache_full]
        for c in self._pcache + self._ccache:
            c.zero_()

    def _bucket(self, caches: list[torch.Tensor], steps: np.ndarray) -> list[torch.Tensor]:
        """Views of the first R rows, R = the bucket holding every row's prefix and new row."""
        rows = bucket_for(int(steps.max()) + 1, self.buckets)
        return [c[:, :, :rows] for c in caches]

    @staticmethod
    def _store(caches: list[torch.Tensor], rows: tuple[torch.Tensor, ...], start) -> None:
        """The kv_steps modules return new rows in graph_io's pair order (key.0, value.0, ...)."""
        for cache, r in zip(caches, rows, strict=True):
            store_rows(cache, r, start)

    def _timed(self, stage: str, fn, *args):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = fn(*args)
        self._times.add(stage, time.perf_counter() - t0)
        return out

    def position_step(self, content, position, segment, step) -> np.ndarray:
        """`step`: int (every row) or int64 [batch] (per row), as in the Backend protocol."""
        ids = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)) for a in (content, position, segment)]
        steps = step_rows(step, self.batch)
        caches = self._bucket(self._pcache, steps)
        logits, hidden, *rows = self._timed("position_step", self._position, *ids, torch.from_numpy(steps), *caches)
        self._store(caches, rows, steps)
        self._hidden = hidden
        return logits.numpy()

    def content_step(self, next_position, next_segment, step) -> np.ndarray:
        ids = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)) for a in (next_position, next_segment)]
        steps = step_rows(step, self.batch)
        caches = self._bucket(self._ccache, steps)
        logits, *rows = self._timed("content_step", self._content, self._hidden, *ids, torch.from_numpy(steps), *caches)
        self._store(caches, rows, steps)
        return logits.numpy()

    def prefill(self, content, position, segment) -> np.ndarray:
        ids = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)) for a in (content, position, segment)]
        logits, hidden, *rows = self._timed("prefill", self._prefill, *ids)
        n = len(kv_pairs(self.dims, "position"))  # prefill returns the position stack's rows first
        assert rows[0].shape[2] == prefill_rows("position", ids[0].shape[1])
        self._store(self._pcache, rows[:n], 0)
        self._store(self._ccache, rows[n:], 0)
        self._hidden = hidden
        return logits.numpy()

    def _need_vae(self):
        if self.vae is None:
            raise InputError("this torch backend has no VAE (token-only use)", "load the model folder with its VAE")
        return self.vae

    def encode(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vae = self._need_vae()
        out = self._timed("encoder", vae.encode, torch.from_numpy(np.asarray(image, dtype=np.float32)))
        return out.grain.numpy(), out.codes.numpy()

    def decode(self, codes: np.ndarray) -> np.ndarray:
        vae = self._need_vae()
        return self._timed("decoder", vae.decode_codes, torch.from_numpy(np.asarray(codes, dtype=np.int64))).numpy()

    def stage_times(self) -> dict[str, StageStats]:
        return self._times.snapshot()

    def reset_stage_times(self) -> None:
        self._times.reset()
