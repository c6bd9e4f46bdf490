"""The engine path on the exported `tiny` model (all six graphs, fp32 / fp16 / int8), on CPU.

- TrtBackend on the simulated device, its "engines" running the real ONNX graphs in ONNX
  Runtime, against OrtBackend through the shared loop: real attention reads the K/V caches under
  the `j < step` mask, so a row stored at the wrong offset, a stale `hidden` or a missed cache
  reset changes the logits. Prefill (image completion) and encode/decode are included.
- `compare_graphs` feeds every graph valid inputs (finite outputs in every precision).
- `build_engines` against the fake tensorrt module plans all six graphs (prefill token profile).
What this does not show: TensorRT's numerics or CUDA's behaviour (tests/test_engines_gpu.py).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from engines_fakes import FakeDevice, FakeLoader, Recorder, fake_engine_folder, ort_compute
from export_helpers import images, tiny_export
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

from dq_edge.engines.compare import compare_graphs
from dq_edge.engines.plan import BuildOptions, export_source
from dq_edge.engines.trt_backend import TrtBackend
from dq_edge.graph_io import GRAPH_NAMES, graph_specs
from dq_edge.generation import SamplingParams, generate_tokens
from dq_edge.runtime.ort_backend import OrtBackend
from dq_edge.sequences import TokenBatch, encode_batch


def backends(tmp_path, precision: str):
    source = export_source(tiny_export(), precision)
    folder = fake_engine_folder(tmp_path / "engines", source)
    dev = FakeDevice()
    loader = FakeLoader(dev, graph_specs(source.dims, precision, source.max_batch), compute=ort_compute(source.onnx_files))
    trt = Recorder(TrtBackend(folder, device=dev, loader=loader))
    ort_backend = Recorder(OrtBackend(source.onnx_files, source.dims, source.layout, precision, source.max_batch))
    return source, trt, ort_backend


def assert_same_run(trt: Recorder, ort_backend: Recorder, a: TokenBatch, b: TokenBatch) -> None:
    assert [n for n, _ in trt.logits] == [n for n, _ in ort_backend.logits]
    for (_, la), (_, lb) in zip(trt.logits, ort_backend.logits):
        np.testing.assert_allclose(la, lb, rtol=1e-5, atol=1e-5)  # two ORT sessions, other batch shapes: rounding may differ
    for field in ("content", "position", "segment", "lengths"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_loop_parity_with_the_ort_backend(tmp_path, precision):
    source, trt, ort_backend = backends(tmp_path, precision)
    for batch, seed in ((3, 0), (4, 1)):  # second run: caches must be reset by begin()
        params = SamplingParams(seed=seed, top_k=8)
        a = generate_tokens(trt, source.layout, batch, params=params)
        b = generate_tokens(ort_backend, source.layout, batch, params=params)
        assert_same_run(trt, ort_backend, a, b)
    assert len(set(a.lengths.tolist())) > 1 or len(trt.logits) > 40  # samples stop at different steps


def test_completion_prefill_and_image_graphs(tmp_path):
    source, trt, ort_backend = backends(tmp_path, "fp32")
    pictures = images(2, seed=3)
    grain, codes = trt.encode(pictures)
    ref_grain, ref_codes = ort_backend.encode(pictures)
    np.testing.assert_array_equal(grain, ref_grain)
    np.testing.assert_array_equal(codes, ref_codes)
    full = encode_batch(source.layout, grain, codes)
    k = 9
    prefix = TokenBatch(full.content[:, :k], full.position[:, :k], full.segment[:, :k], np.full(2, k))
    params = SamplingParams(seed=4)
    a = generate_tokens(trt, source.layout, 2, params=params, prefix=prefix)
    b = generate_tokens(ort_backend, source.layout, 2, params=params, prefix=prefix)
    assert trt.logits[0][0] == "prefill"
    assert_same_run(trt, ort_backend, a, b)
    np.testing.assert_allclose(trt.decode(codes), ort_backend.decode(codes), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_compare_feeds_every_graph_valid_inputs(precision):
    source = export_source(tiny_export(), precision)
    same = compare_graphs(source, second=lambda g: OnnxrtRunner(SessionFromOnnx(str(source.onnx_files[g])), name="again"))
    assert [g.graph for g in same] == list(GRAPH_NAMES)
    assert all(o.finite for g in same for o in g.outputs)
    assert all(g.passed for g in same)
    dgc = next(g for g in same if g.graph == "dgc")
    assert {o.name: o.mismatch for o in dgc.outputs} == {"grain": 0.0, "codes": 0.0}


def test_fake_tensorrt_build_plans_all_six_graphs(tmp_path, monkeypatch):
    from engines_fakes import TARGET, fake_tensorrt

    from dq_edge.engines import build as build_mod

    trt, log = fake_tensorrt("10.3.0.30")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(build_mod, "gpu_unavailable_reason", lambda: None)
    monkeypatch.setattr(build_mod, "current_target", lambda _trt: TARGET)
    source = export_source(tiny_export(), "fp16")
    report = build_mod.build_engines(source, BuildOptions("fp16", max_batch=2), tmp_path / "engines")
    assert tuple(report.built) == GRAPH_NAMES
    profiles = {b[1].split(".")[0]: b[3] for b in log if b[0] == "build"}
    L = source.dims.max_length
    assert profiles["transformer_prefill"]["content"] == ((1, 2), (2, min(L, 64)), (2, L))
    assert profiles["decoder"]["codes"] == ((1, 8, 8), (2, 8, 8), (2, 8, 8))
