"""The benchmark harness runs and reports (no timing assertions: benchmarks live in benchmarks/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dq_edge.bench import floors
from dq_edge.bench.stages import BenchSettings, bench_backend, sequence_length, synthetic_tokens
from dq_edge.bench.timing import Stats, measure
from dq_edge.cli.main import main
from dq_edge.models.torch_backend import TorchBackend
from dq_edge.models.transformer import build_transformer
from dq_edge.models.vae import build_vae

from runtime_fixtures import class_export, class_model_folder
from torch_threads import single_torch_thread  # noqa: F401

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
FAST = BenchSettings(warmup=0, reps=1)


@pytest.fixture(scope="module")
def tiny_torch_backend() -> TorchBackend:
    vae = build_vae("tiny", seed=0).eval()
    tr = build_transformer("tiny", vae.token_layout(), seed=1)
    return TorchBackend(tr, vae=vae, max_batch=2)


def test_stats_percentiles_and_measure_counts_calls():
    s = Stats.of([0.001, 0.002, 0.003, 0.004, 0.010])
    assert s.p50 == pytest.approx(0.003) and s.min == 0.001 and s.max == 0.010
    assert s.p50 <= s.p90 <= s.max
    calls = []
    stats = measure(lambda: calls.append(1), warmup=2, reps=3)
    assert len(calls) == 5 and stats.n == 3


def test_sequence_length_matches_synthetic_tokens(tiny_torch_backend):
    layout = tiny_torch_backend.layout
    for ratio in (0.0, 0.5, 1.0):
        tokens = synthetic_tokens(layout, 2, ratio)
        assert int(tokens.lengths[0]) == sequence_length(layout, ratio)
    assert sequence_length(layout, 1.0) == layout.max_length  # all-fine fills the cache


def test_bench_backend_reports_every_stage(tiny_torch_backend):
    records = bench_backend(tiny_torch_backend, [1, 2], FAST, steps=[1, 5])
    assert [r["batch"] for r in records] == [1, 2]
    for rec in records:
        assert set(rec["steps"]) == {"1", "5"}
        for step in rec["steps"].values():
            assert step["position_step"]["p50"] > 0 and step["content_step"]["p50"] > 0 and step["wall"]["n"] == 1
        assert rec["vae"]["encode"]["encoder"]["p50"] > 0 and rec["vae"]["decode"]["decoder"]["p50"] > 0
        gen = rec["generation"]
        assert gen["tokens_per_s"] > 0 and gen["images_per_s_with_decoder"] > 0
        assert gen["tokens_per_image"] == sequence_length(tiny_torch_backend.layout, 0.5)


def test_floors_measure_bandwidth_and_gemm():
    bw = floors.memory_bandwidth(1 << 20, reps=1)
    assert bw["read_gbps"] > 0 and bw["copy_gbps"] > 0
    g = floors.gemm_fp32(2, 32, 128, reps=1)
    assert g["gflops"] > 0 and g["shape"] == [2, 32, 128]
    int8 = floors.gemm_int8_ort(2, 32, 128, reps=1)
    assert int8 is None or int8["gflops"] > 0
    fake = {"bandwidth": [{"size_bytes": 10, "read_gbps": 1.0}, {"size_bytes": 100, "read_gbps": 2.0}], "gemm": []}
    assert floors.bandwidth_for(fake, 50) == 2.0 and floors.bandwidth_for(fake, 5) == 1.0 and floors.bandwidth_for(fake, 500) == 2.0


def test_cli_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--engine", str(class_export()), "--backend", "ort-cpu", "--batch-sizes", "1,2",
                 "--num", "1", "--warmup", "0", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["machine"]["cpu"] and result["machine"]["versions"]["onnxruntime"]
    assert result["peak_rss_mib"] > 0
    (run,) = result["runs"]
    assert run["backend"] == "ort-cpu" and run["precision"] == "fp32" and run["device_memory"] is None
    assert [b["batch"] for b in run["batches"]] == [1, 2]
    for rec in run["batches"]:
        assert {"encoder", "dgc"} <= set(rec["vae"]["encode"]) and "decoder" in rec["vae"]["decode"]
        assert rec["generation"]["images_per_s"] > 0
    assert "position step" in capsys.readouterr().out


def test_cli_bench_exports_a_model_folder_once(tmp_path, monkeypatch, capsys):
    """Like `dq-edge run`, a model folder is exported into the cache, then benched."""
    monkeypatch.setenv("DQ_EDGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    args = ["bench", "--engine", str(class_model_folder()), "--batch-sizes", "1", "--num", "1", "--warmup", "0", "--json", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    (run,) = json.loads(out.read_text())["runs"]
    assert Path(run["folder"]).is_relative_to(tmp_path / "cache")
    assert (Path(run["folder"]) / "manifest.json").is_file()


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["--batch-sizes", "1,x"], 2, "--batch-sizes"),
        (["--batch-sizes", "0"], 2, "positive"),
        (["--precision", "fp8"], 2, "unknown precision"),
        (["--num", "0"], 2, "--num"),
    ],
)
def test_cli_bench_usage_errors(args, code, needle, capsys):
    assert main(["bench", "--engine", str(class_export()), *args]) == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_cli_bench_missing_folder_is_one_line_error(tmp_path, capsys):
    assert main(["bench", "--engine", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "hint" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------ benchmarks/ suite pieces
@pytest.fixture(scope="module")
def suite_modules():
    sys.path.insert(0, str(BENCH_DIR))
    import official_baseline
    import suite_measure

    yield official_baseline, suite_measure
    sys.path.remove(str(BENCH_DIR))


def test_official_step_equals_teacher_forcing_last_row(suite_modules, tiny_torch_backend):
    """The baseline does the official algorithm's work: its logits are the teacher-forced ones."""
    official_baseline, _ = suite_modules
    tr = tiny_torch_backend.tr
    step = official_baseline.FullPrefixStep(tr, batch=2, prefix=7)
    pos, con = step()
    c, p, s = (torch.cat([a, b[:, -1:]], dim=1) for a, b in zip(step.inputs, (step.inputs[0], *step.next)))
    with torch.no_grad():
        tf_pos, tf_con = tr(c, p, s)
    torch.testing.assert_close(pos, tf_pos[:, -1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(con, tf_con[:, -1], rtol=1e-5, atol=1e-5)


def test_integrated_cost_is_the_sum_of_the_interpolated_curve(suite_modules):
    _, suite_measure = suite_modules
    # linear curve 1 + t ms: exact through any two points and beyond them
    points = {10: 11.0, 20: 21.0}
    assert suite_measure.integrated_seconds(points, 5) == pytest.approx(sum(1.0 + t for t in range(4)))
    flat = {64: 2.0, 320: 2.0, 640: 2.0}
    assert suite_measure.integrated_seconds(flat, 101) == pytest.approx(200.0)
    # a (noisy) falling curve holds its end values outside the measured range
    np.testing.assert_allclose(suite_measure.interpolate({5: 2.0, 10: 1.0}, np.array([0.0, 20.0])), [2.0, 1.0])
    np.testing.assert_allclose(suite_measure.interpolate({5: 1.0, 10: 6.0}, np.array([0.0])), [0.0])  # >= 0


def test_suite_runs_end_to_end_on_a_tiny_model(tmp_path, monkeypatch):
    """run_suite's pieces on the 256-px token grid with the tiny preset: every configuration
    measured, floors, targets, and the JSON / markdown / PNG / README table written."""
    monkeypatch.setenv("DQ_EDGE_BENCH_CACHE", str(tmp_path / "cache"))
    sys.path.insert(0, str(BENCH_DIR))
    try:
        for name in ("suite_models", "run_suite"):
            sys.modules.pop(name, None)  # re-read CACHE from the environment
        import run_suite
        import suite_models
        from suite_report import readme_table, write_results

        floors_ = {"bandwidth": [{"size_bytes": 1 << 30, "read_gbps": 10.0}],
                   "gemm": [{"kind": "fp32-numpy", "shape": [512, 512, 512], "gflops": 100.0}]}
        model = suite_models.prepare_p6c18(run_suite.precisions_of(run_suite.CONFIGS), lambda _m: None, preset="tiny")
        record = run_suite.bench_model(model, floors_, [1], BenchSettings(0, 1), BenchSettings(0, 1))
    finally:
        sys.path.remove(str(BENCH_DIR))
    assert set(record["curves"]) == {"official", "torch-kv", "ort-fp32", "ort-int8", "ort-fp16", "ort-w8", "ort-w4"}, record["unavailable"]
    assert record["tokens_per_image"] == 644 and record["tokens_all_fine"] == 1028
    for config, per_b in record["per_image_estimated"].items():
        est = per_b["1"]
        assert est["dynamic"]["seconds_per_image"] < est["all_fine"]["seconds_per_image"], config
    assert all(f["floor_ms"] > 0 and f["ratio_to_floor"] > 0 for f in record["floors"])
    record["name"] = "p6c18"  # the targets are defined on p6c18: check their plumbing here
    result = {"kind": "dq-edge-bench-suite", "created": "2026-01-01T00:00:00Z", "command": "test", "quick": True,
              "settings": {}, "machine": {"cpu": "test cpu", "cores_usable": 2, "versions": {k: "x" for k in ("python", "torch", "onnxruntime", "numpy", "onnx", "dq_edge")}},
              "floors": floors_ | {"bandwidth": [{"size_bytes": 1 << 30, "read_gbps": 10.0, "copy_gbps": 20.0}],
                                   "gemm": [{"kind": "fp32-numpy", "shape": [512, 512, 512], "gflops": 100.0, "gflops_p50": 90.0}]},
              "models": [record], "peak_rss_mib": 1.0, "seconds": 1.0}
    result["targets"] = run_suite.evaluate_targets(result)
    measured = {t["target"]: t["value"] for t in result["targets"]}
    assert len(measured) == 7
    assert measured["ORT w8 vs ORT fp32, batch 1 (per step)"] > 0
    for name, value in measured.items():  # only batch 1 ran: batch-8 targets have no value
        assert (value is None) == ("batch 8" in name), name
    paths = write_results(result, tmp_path / "results", "test-run")
    assert [p.suffix for p in paths] == [".json", ".md", ".png"] and all(p.stat().st_size > 0 for p in paths)
    table = readme_table(result)
    assert "| p6c18 | 1 |" in table and "ORT w8 s/image" in table and "w4 vs fp32" in table
    lines = table.splitlines()
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    header = next(cells(line) for line in lines if line.startswith("| model |"))
    row = dict(zip(header, cells(next(line for line in lines if line.startswith("| p6c18 | 1 |")))))
    for column in ("ORT w8 s/image", "ORT w4 s/image", "w8 vs fp32", "w4 vs fp32"):
        assert row[column] not in ("", "-"), column
