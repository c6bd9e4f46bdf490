"""GPU tests of the engine path: real TensorRT builds, the native backend vs ONNX Runtime, CUDA
graphs, the cuda-python device layer. Marked `gpu`: they skip (with the reason) unless TensorRT
and a CUDA device are present. On an RTX 3090 or a Jetson: `pytest -m gpu tests/test_engines_gpu.py`.

The graphs are H4's hand-written ONNX step graphs (tests/runtime_fixtures.py) and, when the
session has it, the exported `tiny` model (all six graphs).
"""

from __future__ import annotations

import numpy as np
import pytest

from dq_edge.engines.plan import BuildOptions, export_source
from engines_fakes import Recorder, probe_export

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    from dq_edge.engines.build import build_engines

    tmp = tmp_path_factory.mktemp("gpu")
    source = export_source(probe_export(tmp / "export"), "fp32")
    report = build_engines(source, BuildOptions("fp32", timing_cache=tmp / "timing.cache"), tmp / "engines")
    return source, report


def test_build_writes_plans_manifest_and_timing_cache(engines):
    from dq_edge.engines.build import current_target, import_tensorrt
    from dq_edge.engines.manifest import check_target, read_manifest, verify_engine_files

    source, report = engines
    manifest = read_manifest(report.folder)
    assert check_target(manifest, current_target(import_tensorrt())) == []
    verify_engine_files(manifest, list(source.onnx_files))
    assert report.strongly_typed and (report.folder.parent / "timing.cache").stat().st_size > 0


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_trt_backend_matches_ort_through_the_loop(engines, cuda_graph):
    from dq_edge.engines.trt_backend import TrtBackend
    from dq_edge.generation import SamplingParams, generate_tokens
    from dq_edge.runtime.ort_backend import OrtBackend

    source, report = engines
    trt = Recorder(TrtBackend(report.folder, cuda_graph=cuda_graph))
    ort_backend = Recorder(OrtBackend(source.onnx_files, source.dims, source.layout, "fp32", source.max_batch))
    for batch in (3, 3, 1):  # repeated batch reuses captured graphs; a new batch recaptures
        params = SamplingParams(seed=batch)
        a = generate_tokens(trt, source.layout, batch, params=params)
        b = generate_tokens(ort_backend, source.layout, batch, params=params)
        np.testing.assert_array_equal(a.position, b.position)
        np.testing.assert_array_equal(a.content, b.content)
    for (name_a, la), (name_b, lb) in zip(trt.logits, ort_backend.logits):
        assert name_a == name_b
        np.testing.assert_allclose(la, lb, rtol=1e-4, atol=1e-4)
    times = trt.stage_times()
    assert times["position_step"].count == sum(1 for n, _ in trt.logits if n == "position_step")
    assert times["position_step"].min > 0


def test_compare_cli_passes(engines, capsys):
    from dq_edge.cli.main import main

    source, report = engines
    assert main(["compare", str(source.folder), "--engine", str(report.folder)]) == 0
    assert "match within the fp32 tolerances" in " ".join(capsys.readouterr().out.split())


def test_cuda_device_pitched_row_copy():
    from dq_edge.device import CudaDevice

    dev = CudaDevice()
    stream = dev.create_stream()
    B, H, L, D = 2, 3, 5, 4
    cache = dev.alloc(B * H * L * D * 4)
    rows = dev.alloc(B * H * D * 4)
    dev.memset(cache, 0, B * H * L * D * 4, stream)
    new = np.arange(B * H * D, dtype=np.float32).reshape(B, H, 1, D) + 1
    dev.h2d(rows, new, stream)
    dev.copy_2d(cache + 3 * D * 4, L * D * 4, rows, D * 4, D * 4, B * H, stream)  # row step=3
    out = dev.alloc_host((B, H, L, D), np.float32)
    dev.d2h(out.array, cache, stream)
    dev.synchronize(stream)
    np.testing.assert_array_equal(out.array[:, :, 3:4], new)
    assert not out.array[:, :, :3].any() and not out.array[:, :, 4:].any()
    dev.free(cache)
    dev.free(rows)
    dev.free_host(out)


def replay(backend, tokens) -> list[np.ndarray]:
    """Teacher-forced pass of a TokenBatch through a backend's step graphs: logits of every step."""
    out = []
    backend.begin(tokens.batch)
    for t in range(int(tokens.lengths.min()) - 1):
        out.append(backend.position_step(tokens.content[:, t], tokens.position[:, t], tokens.segment[:, t], t))
        out.append(backend.content_step(tokens.position[:, t + 1], tokens.segment[:, t + 1], t))
    return out


@pytest.mark.parametrize("precision,atol", [("fp32", 2e-3), ("fp16", 5e-2)])
def test_tiny_model_engines_match_ort(tmp_path, precision, atol):
    """All six graphs of the exported tiny model: build, compare (Polygraphy), step-by-step logits."""
    pytest.importorskip("torch", reason="the tiny model is exported with torch (a Jetson may not have it)")
    from export_helpers import images, tiny_export

    from dq_edge.cli.main import main
    from dq_edge.engines.build import build_engines
    from dq_edge.engines.trt_backend import TrtBackend
    from dq_edge.generation import SamplingParams, generate_tokens
    from dq_edge.runtime.ort_backend import OrtBackend

    source = export_source(tiny_export(), precision)
    report = build_engines(source, BuildOptions(precision), tmp_path / "engines")
    assert main(["compare", str(source.folder), "--engine", str(report.folder)]) == 0
    trt = TrtBackend(report.folder)
    ort_backend = OrtBackend(source.onnx_files, source.dims, source.layout, precision, source.max_batch)
    tokens = generate_tokens(ort_backend, source.layout, 2, params=SamplingParams(seed=0))
    for a, b in zip(replay(trt, tokens), replay(ort_backend, tokens)):
        np.testing.assert_allclose(a, b, atol=atol, rtol=atol)
    pictures = images(2, seed=1)
    grain_trt, grain_ort = trt.encode(pictures)[0], ort_backend.encode(pictures)[0]
    if precision == "fp32":
        np.testing.assert_array_equal(grain_trt, grain_ort)
    else:  # an fp16 ArgMax near-tie may flip a region, as `compare` tolerates (1%)
        assert np.mean(grain_trt != grain_ort) <= 0.01
    codes = ort_backend.encode(pictures)[1]
    np.testing.assert_allclose(trt.decode(codes), ort_backend.decode(codes), atol=atol * 10)


@pytest.mark.parametrize("provider", ["cuda", "trt"])
def test_ort_gpu_providers_match_ort_cpu_through_the_loop(engines, provider):
    """Audit C1 on the real thing: every logits array of ORT-CUDA / ORT-TensorRT EP equals ORT-CPU's."""
    from dq_edge.generation import SamplingParams, generate_tokens
    from dq_edge.runtime.ort_backend import OrtBackend, provider_available

    if not provider_available(provider):
        pytest.skip(f"this onnxruntime has no {provider} provider (install dq-edge[cuda])")
    source, _ = engines
    cpu = Recorder(OrtBackend(source.onnx_files, source.dims, source.layout, "fp32", source.max_batch))
    gpu = Recorder(OrtBackend(source.onnx_files, source.dims, source.layout, "fp32", source.max_batch, provider=provider))
    params = SamplingParams(greedy=True)
    a = generate_tokens(gpu, source.layout, 3, params=params)
    b = generate_tokens(cpu, source.layout, 3, params=params)
    for (name, la), (_, lb) in zip(gpu.logits, cpu.logits):
        np.testing.assert_allclose(la, lb, rtol=1e-3, atol=1e-3, err_msg=name)
    np.testing.assert_array_equal(a.content, b.content)
    gpu.close()


def test_foreign_timing_cache_is_replaced(engines, tmp_path):
    """Audit H2 on the real thing: bytes TensorRT cannot use as a timing cache do not stop a build."""
    from dq_edge.engines.build import build_engines

    source, _ = engines
    cache = tmp_path / "foreign.timing-cache"
    cache.write_bytes(np.random.default_rng(0).bytes(4096))
    events: list[str] = []
    report = build_engines(source, BuildOptions("fp32", timing_cache=cache), tmp_path / "engines", events.append)
    assert set(report.built) == set(source.onnx_files)
    assert any("timing cache" in e for e in events)
