"""Length-bucketed KV caches: a step binds only the smallest bucket holding every row's prefix.
Bucketed and full-length caches give the same tokens (sampled, greedy, continuous batching) and
logits within float tolerance, on ONNX Runtime CPU and torch; the exported step graphs take
their cache length from the cache itself."""

from __future__ import annotations

import numpy as np
import pytest

import export_helpers
from dq_edge.export.manifest import load_export
from dq_edge.generation import ContinuousBatcher, SamplingParams, generate_tokens, image_requests
from dq_edge.graph_io import CACHE_ROWS, bucket_for, cache_buckets
from dq_edge.runtime.ort_backend import OrtBackend

torch = pytest.importorskip("torch")
SMALL = 4  # buckets 4, 8, 16, ..., L on the tiny model: every generation crosses several


def _ort(smallest):
    info = load_export(export_helpers.tiny_export(), "fp32")
    return OrtBackend(info.files, info.dims, info.layout, "fp32", info.max_batch, threads=1, smallest_bucket=smallest)


def _torch(smallest):
    from dq_edge.models.torch_backend import TorchBackend
    from dq_edge.models.transformer import load_transformer

    return TorchBackend(load_transformer(export_helpers.tiny_model_folder()), max_batch=export_helpers.MAX_BATCH,
                        smallest_bucket=smallest)


def test_buckets_cover_every_length_within_twice_one_cache():
    for L in (1, 5, 64, 65, 1028):
        buckets = cache_buckets(L, 64)
        assert buckets[-1] == L and list(buckets) == sorted(set(buckets)) and sum(buckets) < 2 * L or buckets == (L,)
        for rows in (1, L // 2 + 1, L):
            b = bucket_for(rows, buckets)
            assert b >= rows and all(x < rows for x in buckets if x < b)


def test_exported_step_graphs_take_the_cache_length_at_run_time():
    import onnx
    from onnx import numpy_helper

    info = load_export(export_helpers.tiny_export(), "fp32")
    for graph in ("transformer_position_step", "transformer_content_step"):
        model = onnx.load(str(info.files[graph]))
        past = next(i for i in model.graph.input if i.name == "past_key.0")
        assert past.type.tensor_type.shape.dim[2].dim_param == CACHE_ROWS
        # no integer constant holds L: the mask's length comes from Shape(past), the row index from `step`
        small = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT64]
        small += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
        values = [numpy_helper.to_array(t) for t in small if int(np.prod(t.dims)) <= 8]
        assert not any((v == info.dims.max_length).any() for v in values if v.dtype.kind in "iu")
        assert "Shape" in {n.op_type for n in model.graph.node}


@pytest.mark.parametrize("make", [_ort, _torch], ids=["ort-cpu", "torch"])
@pytest.mark.parametrize("params", [SamplingParams(seed=4, top_k=30), SamplingParams(greedy=True)], ids=["sampled", "greedy"])
def test_bucketed_and_full_caches_give_the_same_tokens(make, params):
    full, bucketed = make(None), make(SMALL)
    assert len(bucketed.buckets if hasattr(bucketed, "buckets") else bucketed._buffers.buckets) > 2
    layout = full.layout
    want = generate_tokens(full, layout, export_helpers.MAX_BATCH, params=params)
    got = generate_tokens(bucketed, layout, export_helpers.MAX_BATCH, params=params)
    assert int(want.lengths.max()) > 2 * SMALL  # the generation crossed buckets
    for a, b in zip((got.content, got.position, got.lengths), (want.content, want.position, want.lengths)):
        np.testing.assert_array_equal(a, b)


def test_bucketed_logits_match_full_length_within_float_tolerance():
    full, bucketed = _ort(None), _ort(SMALL)
    tokens = generate_tokens(full, full.layout, 2, params=SamplingParams(seed=8))
    T = int(tokens.lengths.min())
    for backend in (full, bucketed):
        backend.begin(2)
    for t in range(T - 1):
        column = (tokens.content[:, t], tokens.position[:, t], tokens.segment[:, t])
        a, b = full.position_step(*column, t), bucketed.position_step(*column, t)
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(a).max())
        nxt = (tokens.position[:, t + 1], tokens.segment[:, t + 1])
        a, b = full.content_step(*nxt, t), bucketed.content_step(*nxt, t)
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(a).max())
    assert bucketed._buffers.rows == bucket_for(T - 1, bucketed._buffers.buckets) < full.dims.max_length


def test_continuous_batching_with_buckets_matches_full_length():
    params = SamplingParams(seed=6)
    runs = [ContinuousBatcher(_ort(s), image_requests(6, None, params), 3, params).run() for s in (None, SMALL)]
    np.testing.assert_array_equal(runs[0].content, runs[1].content)
    np.testing.assert_array_equal(runs[0].lengths, runs[1].lengths)
