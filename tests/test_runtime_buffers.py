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
    bufs = backend._buffers.arrays["transformer_position_step"]
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
        content_cache = backend._buffers.arrays["transformer_content_step"]["past_key.1"][:batch, 0, step, 0]
        np.testing.assert_allclose(content_cache, logits[:, 0] * backend.dims.width + step)
        assert content_logits.shape == (batch, backend.dims.content_vocab)
        assert backend.buffer_addresses() == before
    # rows beyond the last step stay zero; rows of samples beyond `batch` were never touched
    assert not bufs["past_key.0"][:batch, :, 6:].any() and not bufs["past_key.0"][batch:].any()
    times = backend.stage_times()
    assert times["position_step"].count == 6 and times["content_step"].count == 6


def test_begin_zeroes_caches_and_rejects_big_batch(probe_step_graphs):
    backend = _backend(probe_step_graphs)
    backend.begin(2)
    backend.position_step(np.array([5, 6]), np.zeros(2, np.int64), np.zeros(2, np.int64), 0)
    assert backend._buffers.arrays["transformer_position_step"]["past_key.0"].any()
    backend.begin(2)
    assert not backend._buffers.arrays["transformer_position_step"]["past_key.0"].any()
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
    spans = [(a.ctypes.data, a.ctypes.data + a.nbytes) for bufs in backend._buffers.arrays.values() for a in bufs.values()]
    bound = [v for k, v in seen[0].items() if k.startswith("bound/")]
    assert bound and all(any(lo <= ptr < hi for lo, hi in spans) for ptr in bound)


@pytest.mark.parametrize("provider", ["cuda", "trt"])
def test_gpu_provider_steps_read_what_the_host_wrote(monkeypatch, provider):
    """Audit C1. On ORT's CUDA / TensorRT providers a host input is copied to the device when it
    is bound (tests/ort_fakes.py cites IOBinding.cc), so a backend that binds host buffers once
    and writes them in place runs every step on the bind-time snapshot. Under that fake, every
    logits array of a greedy generation, with and without a prefill, must equal the CPU
    provider's. (The pre-fix OrtBackend fails here: position logits identical at every step.)"""
    import export_helpers
    from engines_fakes import FakeDevice, Recorder
    from ort_fakes import fake_gpu_ort

    from dq_edge.export.manifest import load_export
    from dq_edge.generation import SamplingParams, generate_tokens
    from dq_edge.runtime import ort_backend
    from dq_edge.sequences import TokenBatch

    info = load_export(export_helpers.tiny_export(), "fp32")
    params, k = SamplingParams(greedy=True), 5
    cpu = Recorder(OrtBackend(info.files, info.dims, info.layout, "fp32", info.max_batch, threads=1))
    ref = generate_tokens(cpu, info.layout, 3, params=params)  # the reference runs before the patch
    prefix = TokenBatch(ref.content[:2, :k], ref.position[:2, :k], ref.segment[:2, :k], np.full(2, k))
    generate_tokens(cpu, info.layout, 2, params=params, prefix=prefix)

    device = FakeDevice(name="NVIDIA GeForce RTX 3090", cc=(8, 6))
    fake = fake_gpu_ort(device)
    monkeypatch.setattr(ort_backend, "ort", fake)
    monkeypatch.setattr(ort_backend, "open_device", lambda index=0: device, raising=False)
    gpu = Recorder(OrtBackend(info.files, info.dims, info.layout, "fp32", info.max_batch, provider=provider, threads=1))
    assert gpu.active_providers()[0] != "CPUExecutionProvider"
    got = generate_tokens(gpu, info.layout, 3, params=params)
    generate_tokens(gpu, info.layout, 2, params=params, prefix=prefix)
    for (name, a), (_, b) in zip(gpu.logits, cpu.logits):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)
    assert [n for n, _ in gpu.logits] == [n for n, _ in cpu.logits]
    np.testing.assert_array_equal(got.content, ref.content)
    assert "run_with_iobinding" in fake.runs


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_ep_gets_the_typed_graph_without_weak_typing_flags(precision):
    """Typed ONNX carries the precision: trt_fp16_enable / trt_int8_enable would let TensorRT 10
    pick fp16 for the fp32 islands (norms, softmax) and are gone in TensorRT 11."""
    from dq_edge.graph_io import graph_specs
    from dq_edge.runtime.ort_backend import provider_chain

    dims, _ = probe_dims()
    spec = graph_specs(dims, precision, 4)["transformer_position_step"]
    chain = provider_chain("trt", precision, "/tmp/cache", 0, spec)
    name, options = chain[0]
    assert name == "TensorrtExecutionProvider"
    assert not {k for k in options if k in ("trt_fp16_enable", "trt_int8_enable", "trt_bf16_enable")}
    assert options["trt_engine_cache_enable"] and "past_key.0:1x" in options["trt_profile_min_shapes"]
    assert [p if isinstance(p, str) else p[0] for p in chain[1:]] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
