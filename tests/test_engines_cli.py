"""`dq-edge build-engine`, `dq-edge compare` and `run --backend trt` on a machine without a GPU,
plus the comparison logic itself (ONNX Runtime on both sides stands in for TensorRT)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper as oh

from dq_edge.atomic import sha256_file
from dq_edge.cli.main import main
from dq_edge.engines import build as build_mod
from dq_edge.engines.compare import _check_outputs, compare_graphs, make_feed
from dq_edge.engines.plan import export_source
from dq_edge.export.manifest import read_manifest as read_export
from dq_edge.export.manifest import write_manifest as write_export
from dq_edge.graph_io import graph_specs
from engines_fakes import fake_engine_folder, probe_export

POS, CON = "transformer_position_step", "transformer_content_step"
NO_TRT = "TensorRT is not installed (pip install tensorrt, or JetPack 6 on Jetson)"


@pytest.fixture
def export(tmp_path):
    return probe_export(tmp_path / "export")


@pytest.fixture
def no_gpu(monkeypatch):
    """Same answer on every machine: pretend TensorRT is missing."""
    import dq_edge.engines_probe as probe

    monkeypatch.setattr(probe, "gpu_unavailable_reason", lambda: NO_TRT)
    monkeypatch.setattr(build_mod, "gpu_unavailable_reason", lambda: NO_TRT)


def test_build_engine_without_tensorrt_says_what_to_run(export, tmp_path, capsys, no_gpu):
    out = tmp_path / "engines"
    assert main(["build-engine", str(export), "--fp32", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "TensorRT is not installed" in err and f"dq-edge run --engine {export} --backend ort-cpu" in err
    assert not out.exists()


def test_build_engine_dry_run_prints_the_profiles(export, capsys, no_gpu, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells at the default 80
    assert main(["build-engine", str(export), "--fp32", "--max-batch", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "past_key.0" in out and "(2, 2, 20, 4)" in out and "trtX.Y" in out and "smXY" in out


@pytest.mark.parametrize(
    "args,code,needle",
    [
        (["--fp16", "--int8"], 2, "pick one precision"),
        (["--only", "decoder,bogus"], 2, "unknown graph bogus"),
        (["--fp32", "--opt-level", "9"], 2, "out of range"),
        (["--fp32", "--max-batch", "9"], 2, "exceeds the export's max batch 4"),
        (["--fp16"], 1, "has no fp16 graphs"),
    ],
)
def test_build_engine_bad_input(export, capsys, args, code, needle):
    assert main(["build-engine", str(export), *args]) == code
    assert needle in capsys.readouterr().err


def test_build_engine_on_a_non_export_folder(tmp_path, capsys):
    assert main(["build-engine", str(tmp_path)]) == 1
    assert "not a dq-edge export folder" in capsys.readouterr().err


def test_compare_on_cpu_runs_ort_and_says_trt_was_skipped(export, tmp_path, capsys, no_gpu):
    engines = fake_engine_folder(tmp_path / "engines", export_source(export, "fp32"))
    assert main(["compare", str(export), "--engine", str(engines)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "ONNX Runtime side ran 2 graph(s) with finite outputs" in out
    assert f"TensorRT side skipped: {NO_TRT}" in out and "Nothing was compared" in out
    assert "pass" not in out.replace("passed", "")  # nothing is reported as passing


def test_compare_without_engine_folder(export, capsys):
    assert main(["compare", str(export), "--only", POS]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "ran 1 graph(s)" in out and "no --engine folder given" in out


def test_compare_refuses_engines_of_other_onnx_files(export, tmp_path, capsys, no_gpu):
    engines = fake_engine_folder(tmp_path / "engines", export_source(export, "fp32"))
    model = onnx.load(export / f"{POS}.fp32.onnx")
    model.doc_string = "re-exported"
    onnx.save(model, export / f"{POS}.fp32.onnx")
    m = read_export(export)  # a consistent export whose step graph changed after the engines were built
    m["precisions"]["fp32"]["graphs"][POS]["sha256"] = sha256_file(export / f"{POS}.fp32.onnx")
    write_export(export, m)
    assert main(["compare", str(export), "--engine", str(engines)]) == 1
    err = capsys.readouterr().err
    assert "built from other ONNX files" in err and "dq-edge build-engine" in err


def test_run_backend_trt_without_tensorrt(export, tmp_path, capsys, no_gpu):
    engines = fake_engine_folder(tmp_path / "engines", export_source(export, "fp32"))
    code = main(["run", "--engine", str(engines), "--backend", "trt", "--out", str(tmp_path / "out"), "--num", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "TensorRT" in err and "ort-cpu" in err
    assert not (tmp_path / "out").exists()


# -- the comparison logic, with ONNX Runtime standing in for TensorRT on the second side ---------
def _ort_runner(path):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    return OnnxrtRunner(SessionFromOnnx(str(path)), name="second")


def _shifted_copy(path, out, output: str, delta: float):
    """The same graph with `delta` added to one output."""
    model = onnx.load(path)
    for node in model.graph.node:
        node.output[:] = [f"{output}_raw" if o == output else o for o in node.output]
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(delta, np.float32), "delta"))
    model.graph.node.append(oh.make_node("Add", [f"{output}_raw", "delta"], [output]))
    onnx.save(model, out)
    return out


def test_compare_passes_identical_and_flags_shifted_outputs(export, tmp_path):
    source = export_source(export, "fp32")
    same = compare_graphs(source, second=lambda g: _ort_runner(source.onnx_files[g]))
    assert [g.passed for g in same] == [True, True] and all(g.polygraphy_passed for g in same)
    shifted = _shifted_copy(source.onnx_files[CON], tmp_path / "shifted.onnx", "content_logits", 0.1)
    report = compare_graphs(source, [CON], second=lambda g: _ort_runner(shifted))
    (graph,) = report
    logits = next(o for o in graph.outputs if o.name == "content_logits")
    assert graph.passed is False and graph.polygraphy_passed is False and logits.passed is False
    assert logits.max_abs_err == pytest.approx(0.1, rel=1e-3)
    assert all(o.passed for o in graph.outputs if o.name != "content_logits")


def test_integer_outputs_are_judged_by_mismatch_share():
    a = {"codes": np.arange(100, dtype=np.int64)}
    b = {"codes": a["codes"].copy()}
    b["codes"][7] = -1
    assert _check_outputs("dgc", a, b, "fp16")[0].passed  # 1 % allowed in fp16
    check = _check_outputs("dgc", a, b, "fp32")[0]
    assert not check.passed and check.mismatch == pytest.approx(0.01)


def test_feeds_are_valid_for_the_specs(export):
    source = export_source(export, "fp32")
    specs = graph_specs(source.dims, "fp32", source.max_batch)
    feed = make_feed(specs[POS], source, 2, np.random.default_rng(0))
    step = int(feed["step"][0])
    assert 0 < step < source.dims.max_length
    assert feed["content"].max() < source.dims.content_vocab and feed["position"].max() < source.dims.position_vocab
    assert not feed["past_key.0"][:, :, step:].any() and feed["past_key.0"][:, :, :step].any()


def test_compare_save_inputs_writes_a_trtexec_replay(export, tmp_path, capsys, no_gpu):
    engines = fake_engine_folder(tmp_path / "engines", export_source(export, "fp32"))
    saved = tmp_path / "inputs"
    assert main(["compare", str(export), "--engine", str(engines), "--save-inputs", str(saved)]) == 0
    out = capsys.readouterr().out
    content = np.fromfile(saved / POS / "content.bin", dtype="<i8")
    cache = np.fromfile(saved / POS / "past_key.0.bin", dtype="<f4").reshape(2, 2, 20, 4)
    step = int(np.fromfile(saved / POS / "step.bin", dtype="<i8")[0])
    assert content.shape == (2,) and content.max() < 19 and not cache[:, :, step:].any()
    plan = engines / f"{POS}.fp32.trt10.3.sm87.plan"
    line = next(x for x in out.splitlines() if x.startswith(POS + ":"))
    shapes = line.split("--shapes=")[1].split()[0]
    assert f"--loadEngine={plan}" in line and shapes.startswith("content:2,position:2,segment:2,step:2")  # step is per row [B]
    assert f"content:{saved / POS / 'content.bin'}" in line
