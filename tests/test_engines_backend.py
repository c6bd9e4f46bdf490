"""TrtBackend bookkeeping against a simulated device and numpy engines (tests/engines_fakes.py).

Proves the call sequence and byte placement (allocation once, addresses once, K/V rows at row
`step`, what crosses to the host, CUDA-graph capture boundaries, manifest refusal). It does not
prove that TensorRT or CUDA behave as modelled: tests/test_engines_gpu.py does, on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dq_edge.engines.trt_backend import TrtBackend, slot_name
from dq_edge.errors import ArtifactMismatchError, ConfigError, InputError
from dq_edge.graph_io import activation_dtype, graph_specs
from dq_edge.generation.backend import Backend
from engines_fakes import DIMS, FakeDevice, FakeLoader, fake_engine_folder, fake_export, row_value, toy_compute

H, D, L = DIMS.heads, DIMS.head_dim, DIMS.max_length
POS, CON = "transformer_position_step", "transformer_content_step"


def make_backend(tmp_path: Path, precision: str = "fp32", *, integrated: bool = False, cuda_graph: bool = False,
                 trt_version: str = "10.3.0.30", cc: tuple[int, int] = (8, 7), name: str = "Orin"):
    folder = tmp_path / "engines"
    if not folder.exists():
        fake_engine_folder(folder, fake_export(tmp_path / "export", precision))
    dev = FakeDevice(name=name, cc=cc, integrated=integrated)
    act = np.dtype(activation_dtype(precision))
    loader = FakeLoader(dev, graph_specs(DIMS, precision, 4), trt_version, compute=lambda g, x: toy_compute(g, x, DIMS, act))
    return TrtBackend(folder, device=dev, loader=loader, cuda_graph=cuda_graph), dev, loader


def tokens(batch: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    content = np.arange(batch, dtype=np.int64) + 3 * step
    return content, np.full(batch, step % 4, np.int64), np.zeros(batch, np.int64)


def expected_sum(step: int, batch: int, stack: str) -> np.ndarray:
    """What the toy engines return when rows 0..step-1 hold the values written at those steps."""
    return np.array([sum(row_value(j, b, stack) for j in range(step)) for b in range(batch)], np.float32)


def run_steps(backend: TrtBackend, batch: int, steps: int) -> None:
    backend.begin(batch)
    for step in range(steps):
        content, position, segment = tokens(batch, step)
        pos_logits = backend.position_step(content, position, segment, step)
        assert pos_logits.shape == (batch, DIMS.position_vocab)
        np.testing.assert_array_equal(pos_logits[:, 0], expected_sum(step, batch, "position"))
        con_logits = backend.content_step(position, segment, step)
        # content logits also read `hidden`, which only the position step wrote (= its content ids)
        np.testing.assert_array_equal(con_logits[:, 0], expected_sum(step, batch, "content") + content)


def test_is_a_backend(tmp_path):
    backend, _, _ = make_backend(tmp_path)
    assert isinstance(backend, Backend)
    assert (backend.name, backend.precision, backend.max_batch) == ("trt", "fp32", 4)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_kv_rows_land_at_row_step(tmp_path, precision):
    backend, dev, _ = make_backend(tmp_path, precision)
    run_steps(backend, batch=3, steps=6)
    act = activation_dtype(precision)
    cache = dev.read(backend._slots["cache.position.key.0"], (4, H, L, D), act)
    for b in range(3):
        for j in range(6):
            assert np.all(cache[b, :, j, :] == row_value(j, b, "position")), (b, j)
    assert not cache[:3, :, 6:].any() and not cache[3:].any()  # untouched rows and samples stay zero
    content_value = dev.read(backend._slots["cache.content.value.1"], (4, H, L, D), act)
    assert np.all(content_value[2, :, 5, :] == -row_value(5, 2, "content"))
    # the last row copy of the position stack: destination row 5, pitch L*D, one D-row per (sample, head)
    item = np.dtype(act).itemsize
    copies = [a for n, a in dev.calls if n == "copy_2d"]
    dst, dpitch, src, spitch, width, height = copies[-2 * DIMS.content_layers - 2 * DIMS.position_layers]
    assert dst == backend._slots["cache.position.key.0"] + 5 * D * item
    assert (dpitch, spitch, width, height) == (L * D * item, D * item, D * item, 3 * H)


def test_rows_at_different_steps_land_at_their_own_rows(tmp_path):
    """Continuous batching: one per-sample pitched copy stores sample b's row at row step[b]."""
    backend, dev, _ = make_backend(tmp_path)
    backend.begin(3)
    steps = np.array([4, 0, 2])
    content, position, segment = tokens(3, 0)
    backend.position_step(content, position, segment, steps)
    cache = dev.read(backend._slots["cache.position.key.0"], (4, H, L, D), np.float32)
    for b, s in enumerate(steps):
        assert np.all(cache[b, :, s, :] == row_value(s, b, "position")), b
        assert not np.delete(cache[b], s, axis=1).any()  # no other row touched
    with pytest.raises(InputError, match="outside the KV cache"):
        backend.content_step(position, segment, np.array([0, L, 1]))


def test_buffers_allocated_once_and_addresses_set_once(tmp_path):
    backend, dev, loader = make_backend(tmp_path)
    allocs = dev.count("alloc") + dev.count("alloc_host")
    per_ctx = {g: ctx.calls.count("set_tensor_address") for g, ctx in loader.contexts.items()}
    assert per_ctx == {g: len(s.inputs) + len(s.outputs) for g, s in backend.specs.items()}
    run_steps(backend, batch=3, steps=4)
    run_steps(backend, batch=2, steps=3)
    backend.begin(2)
    backend.prefill(*(np.zeros((2, 5), np.int64) for _ in range(3)))
    backend.decode(np.zeros((2, 4, 4), np.int64))
    assert dev.count("alloc") + dev.count("alloc_host") == allocs
    assert {g: ctx.calls.count("set_tensor_address") for g, ctx in loader.contexts.items()} == per_ctx
    # one shared activation scratch region for every context
    assert len(set(loader.scratch)) == 1


def test_only_logits_cross_to_host_each_step(tmp_path):
    backend, dev, _ = make_backend(tmp_path)
    backend.begin(3)
    n = len(dev.calls)
    backend.position_step(*tokens(3, 0), 0)
    step_calls = dev.calls[n:]
    d2h = [a for name, a in step_calls if name == "d2h"]
    assert d2h == [(backend._slots["position_logits"], 3 * DIMS.position_vocab * 4)]
    # one host-to-device copy per step (audit L4): all int64 inputs from one pinned staging buffer
    h2d = [a for name, a in step_calls if name == "h2d"]
    assert h2d == [(backend._slots[slot_name(POS, "content")], 4 * 4 * 8)]  # 3 ids + step: [max_batch] each
    assert [backend._slots[slot_name(POS, t)] for t in ("content", "position", "segment", "step")] == [
        h2d[0][0] + 8 * offset for offset in (0, 4, 8, 12)
    ]
    n = len(dev.calls)
    backend.content_step(np.zeros(3, np.int64), np.zeros(3, np.int64), 0)
    d2h = [a for name, a in dev.calls[n:] if name == "d2h"]
    assert d2h == [(backend._slots[slot_name(CON, "content_logits")], 3 * DIMS.content_vocab * 4)]
    assert slot_name(POS, "hidden") == slot_name(CON, "hidden")  # hidden never leaves the device


def test_begin_zeroes_the_caches(tmp_path):
    backend, dev, _ = make_backend(tmp_path)
    run_steps(backend, batch=2, steps=3)
    backend.begin(2)
    for slot, ptr in backend._slots.items():
        if slot.startswith("cache."):
            assert not dev.read(ptr, (4, H, L, D), np.float32).any()
    run_steps(backend, batch=2, steps=3)  # a second generation sees only its own rows


def test_prefill_fills_rows_then_content_step_continues(tmp_path):
    backend, dev, _ = make_backend(tmp_path)
    backend.begin(2)
    T = 5
    content = np.array([[7, 1, 2, 3, 4], [7, 5, 6, 8, 9]], np.int64)
    logits = backend.prefill(content, np.zeros((2, T), np.int64), np.zeros((2, T), np.int64))
    np.testing.assert_array_equal(logits[:, 0], expected_sum(T - 1, 2, "position"))
    pos = dev.read(backend._slots["cache.position.key.0"], (4, H, L, D), np.float32)
    con = dev.read(backend._slots["cache.content.key.1"], (4, H, L, D), np.float32)
    assert np.all(pos[1, :, T - 1] == row_value(T - 1, 1, "position")) and not pos[:2, :, T:].any()
    assert np.all(con[1, :, T - 2] == row_value(T - 2, 1, "content")) and not con[:2, :, T - 1 :].any()
    out = backend.content_step(np.zeros(2, np.int64), np.ones(2, np.int64), T - 1)
    np.testing.assert_array_equal(out[:, 0], expected_sum(T - 1, 2, "content") + content[:, -1])


def test_cuda_graph_captures_engine_only_and_replays(tmp_path):
    backend, dev, _ = make_backend(tmp_path, cuda_graph=True)
    run_steps(backend, batch=3, steps=5)  # FakeDevice raises if any copy is issued inside a capture
    assert dev.count("begin_capture") == dev.count("end_capture") == 2  # one graph per step graph
    assert dev.count("launch") == 2 * 4  # calls 2..5 of each step graph replay the graph
    run_steps(backend, batch=3, steps=3)  # same batch: the graphs are reused
    assert dev.count("begin_capture") == 2
    backend.begin(2)  # new batch: old graphs have the old shapes baked in
    assert dev.count("destroy_graph") == 2
    run_steps(backend, batch=2, steps=3)
    assert dev.count("begin_capture") == 4


def test_integrated_gpu_maps_logits_instead_of_copying(tmp_path):
    backend, dev, _ = make_backend(tmp_path, integrated=True)
    run_steps(backend, batch=2, steps=4)
    assert dev.count("d2h") == 0
    outputs = [a for n, a in dev.calls if n == "alloc_host" and len(a[0]) > 1]  # not the 1-D input staging
    assert outputs and all(mapped for _, _, mapped in outputs)


def test_encode_and_decode(tmp_path):
    backend, dev, _ = make_backend(tmp_path)
    image = np.full((2, 3, 16, 16), 0.5, np.float32)
    image[1] = -0.5
    grain, codes = backend.encode(image)
    np.testing.assert_array_equal(grain, np.stack([np.ones((2, 2)), np.zeros((2, 2))]).astype(np.int64))
    np.testing.assert_array_equal(codes[0], np.arange(16).reshape(4, 4) + 2)
    out = backend.decode(codes)
    assert out.shape == (2, 3, 16, 16) and np.allclose(out, 9.5)
    times = backend.stage_times()
    assert times["encoder"].count == times["dgc"].count == times["decoder"].count == 1


def test_batch_above_max_is_refused(tmp_path):
    backend, _, _ = make_backend(tmp_path)
    with pytest.raises(InputError, match="max batch"):
        backend.begin(5)


@pytest.mark.parametrize(
    "kwargs,needle",
    [({"trt_version": "10.4.0.1"}, "TensorRT 10.3.0.30"), ({"cc": (8, 6), "name": "NVIDIA GeForce RTX 3090"}, "sm86")],
)
def test_refuses_engines_for_another_target(tmp_path, kwargs, needle):
    with pytest.raises(ArtifactMismatchError, match=needle) as info:
        make_backend(tmp_path, **kwargs)
    assert "dq-edge build-engine" in info.value.hint and "--fp32" in info.value.hint


def test_same_sm_other_board_only_warns(tmp_path):
    backend, _, _ = make_backend(tmp_path, name="Orin NX")
    assert len(backend.warnings) == 1 and "Orin NX" in backend.warnings[0]


def test_patch_level_tensorrt_difference_is_refused(tmp_path):
    """Audit L3: TensorRT 10.3.0.26 cannot deserialise a 10.3.0.30 plan (not VERSION_COMPATIBLE)."""
    with pytest.raises(ArtifactMismatchError, match="10.3.0.30.*10.3.0.26") as info:
        make_backend(tmp_path, trt_version="10.3.0.26")
    assert "dq-edge build-engine" in info.value.hint


def test_refuses_a_modified_plan_file(tmp_path):
    make_backend(tmp_path)
    plan = next((tmp_path / "engines").glob("transformer_prefill.*.plan"))
    plan.write_bytes(b"tampered")
    with pytest.raises(ArtifactMismatchError, match="changed since it was built"):
        make_backend(tmp_path)


def test_refuses_wrong_precision_request(tmp_path):
    make_backend(tmp_path)
    dev = FakeDevice()
    with pytest.raises(ConfigError, match="fp32 engines, not fp16"):
        TrtBackend(tmp_path / "engines", "fp16", device=dev, loader=FakeLoader(dev, {}))


def test_shared_loop_drives_trt_backend_like_the_ort_backend(tmp_path):
    """The one generator (dq_edge.generation) on TrtBackend (fake device, engines = the real ONNX step
    graphs run by ONNX Runtime) and on OrtBackend: same logits at every step, same tokens."""
    from dq_edge.engines.plan import export_source
    from dq_edge.generation import SamplingParams, generate_tokens
    from dq_edge.runtime.ort_backend import OrtBackend
    from engines_fakes import Recorder, ort_compute, probe_export

    source = export_source(probe_export(tmp_path / "export"), "fp32")
    folder = fake_engine_folder(tmp_path / "engines", source)
    dev = FakeDevice()
    loader = FakeLoader(dev, graph_specs(source.dims, "fp32", 4), compute=ort_compute(source.onnx_files))
    trt = Recorder(TrtBackend(folder, device=dev, loader=loader))
    ort_backend = Recorder(OrtBackend(source.onnx_files, source.dims, source.layout, "fp32", 4))
    params = SamplingParams(seed=5)
    a = generate_tokens(trt, source.layout, 3, params=params)
    b = generate_tokens(ort_backend, source.layout, 3, params=params)
    assert len(trt.logits) == len(ort_backend.logits) > 10
    for (name_a, la), (name_b, lb) in zip(trt.logits, ort_backend.logits):
        assert name_a == name_b
        np.testing.assert_allclose(la, lb, rtol=1e-5, atol=1e-5)  # two ORT sessions, other batch shapes
    for field in ("content", "position", "segment"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_tensorrt_loader_calls(monkeypatch, tmp_path):
    """TensorRTLoader against a stand-in `tensorrt` module: bytes in, shared scratch memory set
    with (pointer, size), shape-tensor inputs refused with the re-export hint."""
    import sys
    import types

    from dq_edge.engines.trt_backend import TensorRTLoader

    calls = []

    class Engine:
        num_io_tensors = 2

        def __init__(self, blob):
            self.blob = blob

        def get_tensor_name(self, i):
            return ["step", "out"][i]

        def is_shape_inference_io(self, name):
            return self.blob == b"shapey" and name == "step"

        def create_execution_context(self, strategy):
            calls.append(("context", strategy))
            return types.SimpleNamespace(set_device_memory=lambda ptr, size: calls.append(("memory", ptr, size)))

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0.30"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda blob: Engine(blob) if blob else None)
    trt.ExecutionContextAllocationStrategy = types.SimpleNamespace(USER_MANAGED="user")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)

    loader = TensorRTLoader()
    good, bad, empty = tmp_path / "good.plan", tmp_path / "bad.plan", tmp_path / "empty.plan"
    good.write_bytes(b"ok")
    bad.write_bytes(b"shapey")
    empty.write_bytes(b"")
    engine = loader.load(good)
    loader.context(engine, 4096, 512)
    assert calls == [("context", "user"), ("memory", 4096, 512)]
    with pytest.raises(ArtifactMismatchError, match="became a TensorRT shape tensor"):
        loader.load(bad)
    with pytest.raises(ArtifactMismatchError, match="could not deserialize"):
        loader.load(empty)


def test_close_frees_every_allocation_once(tmp_path):
    backend, dev, _ = make_backend(tmp_path, cuda_graph=True)
    with backend:
        run_steps(backend, batch=2, steps=3)
    assert dev.count("free") == dev.count("alloc") and dev.count("free_host") == dev.count("alloc_host")
    assert dev.count("destroy_graph") == 2 and not dev.regions
