"""OrtBackend bookkeeping: buffers allocated once, K/V rows land at row `step`, `hidden` is
handed from the position step to the content step, no buffer moves across steps."""

from __future__ import annotations

import numpy as np
import pytest

from dq_edge.errors import InputError
from dq_edge.runtime.ort_backend import OrtBackend
from runtime_fixtures import probe_dims, probe_step_graphs, random_ids  # noqa: F401 - fixture


def _backend(files) -> OrtBackend:
    dims, layout = probe_dims()
    return OrtBackend(files, dims, layout, "fp32", max_batch=4, threads=1)


def test_rows_written_at_step_and_addresses_stable(probe_step_graphs):
    backend = _backend(probe_step_graphs)
    rng = np.random.default_rng(0)
    batch = 3
    backend.begin(batch)
    before = backend.buffer_addresses()
    bufs = backend._buffers["transformer_position_step"]
    expected_cache = np.zeros((batch, backend.dims.max_length), np.float32)  # value of row `step` per sample
    for step in range(6):
        content = random_ids(rng, batch, 8)
        logits = backend.position_step(content, np.zeros(batch, np.int64), np.zeros(batch, np.int64), step)
        # probe graph: logits = sum of past rows of layer 0 (H*D copies of each row value) + content
        heads_x_dim = backend.dims.heads * backend.dims.head_dim
        np.testing.assert_allclose(logits[:, 0], expected_cache.sum(axis=1) * heads_x_dim + content)
        expected_cache[:, step] = content + step
        np.testing.assert_array_equal(bufs["past_key.0"][:batch, 0, :, 0], expected_cache)
        np.testing.assert_array_equal(bufs["past_value.0"][:batch, 1, :, -1], expected_cache)
        content_logits = backend.content_step(np.zeros(batch, np.int64), np.zeros(batch, np.int64), step)
        # the content probe is driven by the bound hidden state (= position logits over the width)
        content_cache = backend._buffers["transformer_content_step"]["past_key.1"][:batch, 0, step, 0]
        np.testing.assert_allclose(content_cache, logits[:, 0] * backend.dims.width + step)
        assert content_logits.shape == (batch, backend.dims.content_vocab)
        assert backend.buffer_addresses() == before
    # rows beyond the last step stay zero; rows of samples beyond `batch` were never touched
    assert not bufs["past_key.0"][:batch, :, 6:].any() and not bufs["past_key.0"][batch:].any()
    times = backend.stage_times()
    assert len(times["position_step"]) == 6 and len(times["content_step"]) == 6


def test_begin_zeroes_caches_and_rejects_big_batch(probe_step_graphs):
    backend = _backend(probe_step_graphs)
    backend.begin(2)
    backend.position_step(np.array([5, 6]), np.zeros(2, np.int64), np.zeros(2, np.int64), 0)
    assert backend._buffers["transformer_position_step"]["past_key.0"].any()
    backend.begin(2)
    assert not backend._buffers["transformer_position_step"]["past_key.0"].any()
    with pytest.raises(InputError, match="exported maximum"):
        backend.begin(5)
    with pytest.raises(InputError, match="outside the KV cache"):
        backend.position_step(np.array([5, 6]), np.zeros(2, np.int64), np.zeros(2, np.int64), backend.dims.max_length)


def test_real_export_generation_never_moves_buffers():
    """A whole generation on the tiny exported model: after begin(), no buffer or bound OrtValue
    changes address, and every bound OrtValue points into one of the preallocated buffers."""
    import export_helpers
    from dq_edge.export.manifest import load_export
    from dq_edge.generation import SamplingParams, generate_tokens

    info = load_export(export_helpers.tiny_export(), "fp32")
    backend = OrtBackend(info.files, info.dims, info.layout, "fp32", info.max_batch, threads=1)
    seen: list[dict[str, int]] = []
    for method in ("position_step", "content_step"):
        real = getattr(backend, method)

        def recorded(*args, _real=real):
            out = _real(*args)
            seen.append(backend.buffer_addresses())
            return out

        setattr(backend, method, recorded)
    tokens = generate_tokens(backend, info.layout, 3, params=SamplingParams(seed=1))
    assert len(seen) == 2 * (int(tokens.lengths.max()) - 1)
    assert all(s == seen[0] for s in seen)
    spans = [(a.ctypes.data, a.ctypes.data + a.nbytes) for bufs in backend._buffers.values() for a in bufs.values()]
    bound = [v for k, v in seen[0].items() if k.startswith("bound/")]
    assert bound and all(any(lo <= ptr < hi for lo, hi in spans) for ptr in bound)


def test_hidden_as_ort_allocated_value_matches_host_buffer():
    """The GPU providers' path (hidden = an ORT-allocated OrtValue bound to both step graphs and
    filled by prefill via update_inplace), exercised on the CPU provider: same tokens as the
    host-buffer path, with completion (prefill) and plain sampling."""
    import export_helpers
    from dq_edge.export.manifest import load_export
    from dq_edge.generation import SamplingParams
    from dq_edge.runtime.pipeline import RunRequest, generate_images

    info = load_export(export_helpers.tiny_export(), "fp32")
    request = RunRequest(3, 3, None, SamplingParams(seed=2), export_helpers.images(1, seed=5), keep_ratio=0.3)
    results = []
    for on_device in (False, True):
        backend = OrtBackend(info.files, info.dims, info.layout, "fp32", info.max_batch, threads=1)
        backend.hidden_on_device = on_device
        results.append(generate_images(backend, info.layout, request))
        assert bool(backend._hidden_device) == on_device
    np.testing.assert_array_equal(results[0].tokens.content, results[1].tokens.content)
    np.testing.assert_array_equal(results[0].tokens.position, results[1].tokens.position)
