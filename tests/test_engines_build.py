"""`build_engines` against a fake `tensorrt` module that records the builder calls.

Proves which TensorRT calls the builder makes (network flags per TensorRT version, profiles from
the specs, workspace, opt level, timing cache round trip, file names, manifest, `--only` merge,
failure handling). Whether real TensorRT accepts them is checked by tests/test_engines_gpu.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import pytest

from dq_edge.engines import build as build_mod
from dq_edge.engines.manifest import read_manifest, verify_engine_files
from dq_edge.engines.plan import BuildOptions, export_source, profile_for
from dq_edge.errors import ConfigError, DQEdgeError
from dq_edge.graph_io import graph_specs
from engines_fakes import TARGET, fake_tensorrt, probe_export

POS, CON = "transformer_position_step", "transformer_content_step"


@pytest.fixture
def export(tmp_path):
    return export_source(probe_export(tmp_path / "export"), "fp32")


def run_build(monkeypatch, export, out, version="10.3.0.30", **kw):
    trt, log = fake_tensorrt(version, **{k: kw.pop(k) for k in ("strongly_typed_flag", "fail") if k in kw})
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(build_mod, "gpu_unavailable_reason", lambda: None)
    monkeypatch.setattr(build_mod, "current_target", lambda _trt: type(TARGET)(version, TARGET.gpu_name, TARGET.compute_capability))
    return build_mod.build_engines(export, BuildOptions(precision="fp32", **kw), out), log


def test_strongly_typed_build_on_tensorrt_10(monkeypatch, export, tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    report, log = run_build(monkeypatch, export, tmp_path / "engines", workspace_gib=0.5, opt_level=4, timing_cache=cache)
    assert [e for e in log if e[0] == "create_network"] == [("create_network", 1 << 1)] * 2
    assert ("workspace", "workspace", 1 << 29) in log and not any(e[0] == "set_flag" for e in log)
    builds = [e for e in log if e[0] == "build"]
    specs = graph_specs(export.dims, "fp32", export.max_batch)
    assert [b[1] for b in builds] == [f"{POS}.fp32.onnx", f"{CON}.fp32.onnx"]
    assert builds[0][2] == 4 and builds[0][3] == profile_for(specs[POS]) and "step" in builds[0][3]
    assert builds[0][3]["past_key.0"] == ((1, 2, 1, 4), (4, 2, 20, 4), (4, 2, 20, 4))  # cache rows range over the buckets
    # the timing cache is read, threaded through both builds, and written back
    assert [e[1] for e in log if e[0] == "create_timing_cache"] == [b"old", b"old+"]
    assert cache.read_bytes() == b"old++"
    manifest = read_manifest(tmp_path / "engines")
    assert manifest.raw["network"] == {"strongly_typed": True, "builder_flags": []}
    assert manifest.engines[POS]["file"] == f"{POS}.fp32.trt10.3.sm87.plan"
    assert manifest.engines[POS]["onnx_sha256"] == export.onnx_sha256[POS]
    verify_engine_files(manifest, [POS, CON])
    assert (tmp_path / "engines" / manifest.engines[CON]["file"]).read_bytes() == f"engine<{CON}.fp32.onnx>".encode()
    assert report.built.keys() == {POS, CON} and report.kept == ()


def test_tensorrt_11_sets_no_flags(monkeypatch, export, tmp_path):
    _, log = run_build(monkeypatch, export, tmp_path / "engines", version="11.0.0.5")
    assert {e[1] for e in log if e[0] == "create_network"} == {0}
    assert read_manifest(tmp_path / "engines").engines[POS]["file"].endswith(".trt11.0.sm87.plan")


def test_only_rebuilds_one_graph_and_keeps_the_rest(monkeypatch, export, tmp_path):
    out = tmp_path / "engines"
    run_build(monkeypatch, export, out)
    before = read_manifest(out).engines[CON]
    report, log = run_build(monkeypatch, export, out, only=(POS,))
    assert [e[1] for e in log if e[0] == "build"] == [f"{POS}.fp32.onnx"]
    assert report.kept == (CON,) and read_manifest(out).engines[CON] == before


def test_failed_build_names_the_cause_and_writes_no_manifest(monkeypatch, export, tmp_path):
    with pytest.raises(DQEdgeError, match="out of workspace") as info:
        run_build(monkeypatch, export, tmp_path / "engines", fail=True)
    assert "--workspace" in info.value.hint
    assert not (tmp_path / "engines" / "manifest.json").exists()
    assert not list((tmp_path / "engines").glob("*.plan"))


def test_inputs_that_differ_from_the_spec_are_refused(monkeypatch, export, tmp_path):
    model = onnx.load(export.onnx_files[POS])
    model.graph.input[0].name = "tokens"
    for node in model.graph.node:
        node.input[:] = ["tokens" if i == "content" else i for i in node.input]
    onnx.save(model, export.onnx_files[POS])
    with pytest.raises(ConfigError, match="the graph spec says"):
        run_build(monkeypatch, export, tmp_path / "engines")


def test_without_tensorrt_one_line_names_the_cpu_path(export, tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "gpu_unavailable_reason", lambda: "TensorRT is not installed")
    with pytest.raises(DQEdgeError) as info:
        build_mod.build_engines(export, BuildOptions(precision="fp32"), tmp_path / "engines")
    assert "TensorRT is not installed" in info.value.message
    assert f"dq-edge run --engine {export.folder} --backend ort-cpu" in info.value.hint
    assert not (tmp_path / "engines").exists()


def test_failed_rebuild_leaves_the_previous_folder_intact(monkeypatch, export, tmp_path):
    out = tmp_path / "engines"
    cache = out / "orin.timing-cache"  # a file the user keeps inside the engine folder
    run_build(monkeypatch, export, out, timing_cache=cache)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(DQEdgeError):
        run_build(monkeypatch, export, out, fail=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engines", "export"]  # no temp folders left
    run_build(monkeypatch, export, out, only=(POS,), timing_cache=cache)  # an update keeps the user's file
    assert cache.read_bytes().startswith(before[Path("orin.timing-cache")])
    verify_engine_files(read_manifest(out), [POS, CON])


def test_refuses_to_replace_a_folder_that_is_not_an_engine_folder(monkeypatch, export, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.png").write_bytes(b"precious")
    with pytest.raises(DQEdgeError, match="not an engine folder"):
        run_build(monkeypatch, export, out)
    assert (out / "holiday.png").read_bytes() == b"precious" and len(list(out.iterdir())) == 1


def test_rebuild_for_another_tensorrt_drops_the_stale_plans(monkeypatch, export, tmp_path):
    out = tmp_path / "engines"
    run_build(monkeypatch, export, out)
    (out / "notes.txt").write_text("mine")
    report, _ = run_build(monkeypatch, export, out, version="10.4.0.1")
    assert set(report.dropped) == {f"{POS}.fp32.trt10.3.sm87.plan", f"{CON}.fp32.trt10.3.sm87.plan"}
    assert sorted(p.name for p in out.glob("*.plan")) == [f"{CON}.fp32.trt10.4.sm87.plan", f"{POS}.fp32.trt10.4.sm87.plan"]
    assert (out / "notes.txt").read_text() == "mine" and report.kept == ()


@pytest.mark.parametrize("kind", ["foreign", "corrupt"])
def test_foreign_timing_cache_falls_back_to_a_fresh_one(monkeypatch, export, tmp_path, kind):
    """Audit H2: TensorRT refuses a cache from another GPU / version (set_timing_cache returns
    False and sets nothing, so get_timing_cache() is None) or cannot read it at all
    (create_timing_cache gives None). The build warns, continues with a fresh cache and writes
    that one back instead of crashing after the first engine."""
    from engines_fakes import CORRUPT_CACHE, FOREIGN_CACHE

    blob = (FOREIGN_CACHE if kind == "foreign" else CORRUPT_CACHE) + b"-orin"
    cache = tmp_path / "timing.cache"
    cache.write_bytes(blob)
    events: list[str] = []
    trt, log = fake_tensorrt("10.3.0.30")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(build_mod, "gpu_unavailable_reason", lambda: None)
    monkeypatch.setattr(build_mod, "current_target", lambda _trt: TARGET)
    report = build_mod.build_engines(export, BuildOptions(precision="fp32", timing_cache=cache), tmp_path / "engines", events.append)
    assert report.built.keys() == {POS, CON}
    assert sum("refused the timing cache" in e for e in events) == 1  # the second engine reuses the fresh cache
    assert [e[1] for e in log if e[0] == "create_timing_cache"] == [blob, b"", b"+"]
    assert cache.read_bytes() == b"++"


def test_trtexec_commands_replay_valid_inputs(monkeypatch, export, tmp_path):
    """Audit L7: the manifest's trtexec commands load token ids inside the vocabulary."""
    import numpy as np

    run_build(monkeypatch, export, tmp_path / "engines")
    manifest = read_manifest(tmp_path / "engines")
    cmd = manifest.engines[POS]["trtexec"]
    assert "--loadInputs=" in cmd and "--shapes=" in cmd and "step:" in cmd.split("--loadInputs=")[1]
    pairs = dict(item.split(":", 1) for item in cmd.split("--loadInputs=")[1].split()[0].split(","))
    content = np.fromfile(tmp_path / "engines" / pairs["content"], dtype="<i8")
    assert content.size == export.max_batch and 0 <= content.min() and content.max() < export.dims.content_vocab
    step = np.fromfile(tmp_path / "engines" / pairs["step"], dtype="<i8")
    assert step.shape == (export.max_batch,) and 0 <= step.min() and step.max() < export.dims.max_length


@pytest.mark.parametrize("version", ["8.6.1.6", "10.0.1.6"])
def test_tensorrt_older_than_10_1_is_refused(monkeypatch, export, tmp_path, version):
    """Audit L2: the weakly typed fallback cannot work there (no set_device_memory(ptr, size),
    int64 IO cast to int32): refuse before building."""
    from dq_edge.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match=f"TensorRT {version} is too old"):
        run_build(monkeypatch, export, tmp_path / "engines", version=version, strongly_typed_flag=False)
    assert not (tmp_path / "engines").exists()
