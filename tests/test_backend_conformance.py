"""One conformance suite that every backend runs: torch, ONNX Runtime CPU, ONNX Runtime CUDA and
TensorRT EPs on the simulated device (tests/ort_fakes.py: ORT's real IO-binding semantics), native
TensorRT on the simulated device with and without CUDA graphs (tests/engines_fakes.py, engines
running the exported graphs).

For each: greedy generation (plain and completed from a prefix, i.e. prefill) gives the ONNX
Runtime CPU reference's tokens and logits; no buffer moves and nothing is allocated after
construction; close() releases every allocation, stream, event and graph.
What this cannot show: real CUDA / TensorRT numerics (tests/test_engines_gpu.py, on a GPU).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from engines_fakes import FakeDevice, FakeLoader, Recorder, fake_engine_folder, ort_compute

import export_helpers
from dq_edge.export.manifest import load_export
from dq_edge.generation import SamplingParams, generate_tokens
from dq_edge.runtime.ort_backend import OrtBackend
from dq_edge.sequences import TokenBatch

BACKENDS = ("torch", "ort-cpu", "ort-cpu-buckets", "ort-cuda-fake", "ort-cuda-fake-buckets", "ort-trt-fake", "trt-fake",
            "trt-fake-cuda-graph")
SMALL_BUCKET = 2  # "-buckets": cache buckets of 2, 4, 8, ... rows: the generation crosses several
PARAMS = SamplingParams(greedy=True)
BATCH, PREFIX = 2, 5


@dataclass
class Made:
    backend: Any
    addresses: Callable[[], dict]
    device: FakeDevice | None = None


@functools.lru_cache(maxsize=1)
def _info():
    return load_export(export_helpers.tiny_export(), "fp32")


def _run(backend) -> tuple[Recorder, TokenBatch, TokenBatch]:
    rec = Recorder(backend)
    plain = generate_tokens(rec, backend.layout, BATCH, params=PARAMS)
    prefix = TokenBatch(plain.content[:2, :PREFIX], plain.position[:2, :PREFIX], plain.segment[:2, :PREFIX], np.full(2, PREFIX))
    completed = generate_tokens(rec, backend.layout, 2, params=PARAMS, prefix=prefix)
    return rec, plain, completed


@pytest.fixture(scope="module")
def reference():
    """ONNX Runtime CPU, before any test patches the onnxruntime module."""
    info = _info()
    return _run(OrtBackend(info.files, info.dims, info.layout, "fp32", info.max_batch, threads=1))


def _make(name: str, monkeypatch, tmp_path) -> Made:
    info = _info()
    if name == "torch":
        pytest.importorskip("torch")
        from dq_edge.models.torch_backend import TorchBackend
        from dq_edge.models.transformer import load_transformer

        backend = TorchBackend(load_transformer(export_helpers.tiny_model_folder()), max_batch=info.max_batch)
        return Made(backend, lambda: {i: c.data_ptr() for i, c in enumerate(backend._pcache_full + backend._ccache_full)})
    bucket = SMALL_BUCKET if name.endswith("-buckets") else None
    if name.startswith("ort-cpu"):
        backend = OrtBackend(info.files, info.dims, info.layout, "fp32", info.max_batch, threads=1, smallest_bucket=bucket)
        # the host buffers themselves (begin() wraps views of them in fresh OrtValues)
        return Made(backend, lambda: {k: v for k, v in backend.buffer_addresses().items() if not k.startswith("bound/")})
    if name.startswith("ort-"):
        from ort_fakes import fake_gpu_ort

        from dq_edge.runtime import ort_backend

        device = FakeDevice(name="NVIDIA GeForce RTX 3090", cc=(8, 6))
        monkeypatch.setattr(ort_backend, "ort", fake_gpu_ort(device))
        monkeypatch.setattr(ort_backend, "open_device", lambda index=0: device)
        provider = name.split("-")[1]
        backend = OrtBackend(info.files, info.dims, info.layout, "fp32", info.max_batch, provider=provider, threads=1,
                             smallest_bucket=bucket)
        return Made(backend, backend.buffer_addresses, device)
    from dq_edge.engines.plan import export_source
    from dq_edge.engines.trt_backend import TrtBackend
    from dq_edge.graph_io import graph_specs

    source = export_source(export_helpers.tiny_export(), "fp32")
    folder = fake_engine_folder(tmp_path / "engines", source)
    device = FakeDevice()
    loader = FakeLoader(device, graph_specs(source.dims, "fp32", source.max_batch), compute=ort_compute(source.onnx_files))
    backend = TrtBackend(folder, device=device, loader=loader, cuda_graph=name.endswith("cuda-graph"))
    return Made(backend, lambda: dict(backend._slots), device)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_conforms(reference, name, monkeypatch, tmp_path):
    made = _make(name, monkeypatch, tmp_path)
    backend = made.backend
    allocs = made.device.count("alloc") + made.device.count("alloc_host") if made.device else 0
    before = made.addresses()
    rec, plain, completed = _run(backend)
    ref, ref_plain, ref_completed = reference

    # same greedy tokens, same logits within fp32 tolerance, call for call
    for got, want in ((plain, ref_plain), (completed, ref_completed)):
        np.testing.assert_array_equal(got.lengths, want.lengths)
        np.testing.assert_array_equal(got.content, want.content)
        np.testing.assert_array_equal(got.position, want.position)
    assert [n for n, _ in rec.logits] == [n for n, _ in ref.logits]
    assert "prefill" in [n for n, _ in rec.logits]
    for (stage, a), (_, b) in zip(rec.logits, ref.logits):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=stage)

    # buffers reused: nothing moved, nothing allocated by begin / steps / prefill
    assert made.addresses() == before
    if made.device is not None:
        assert made.device.count("alloc") + made.device.count("alloc_host") == allocs

    # close releases everything
    if hasattr(backend, "close"):
        backend.close()
    if made.device is not None:
        assert made.device.live() == {"device": 0, "host": 0, "streams": 0, "events": 0, "graphs": 0}
