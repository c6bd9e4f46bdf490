"""`dq-edge check`'s TensorRT side: the op table is TensorRT 10.3's (onnx-tensorrt operators.md),
and where TensorRT is importable the real parser's `supports_model_v2` is asked (fake here)."""

from __future__ import annotations

import sys

from engines_fakes import fake_tensorrt, probe_export

from dq_edge.export import checks, trt_parser
from dq_edge.export.manifest import load_export
from dq_edge.export.trt_ops import TRT_10_3_ONNX_OPS


def test_op_table_is_the_10_3_matrix():
    # added in 10.4 (windows) / 10.5 (STFT), never supported (Bernoulli): not in 10.3
    assert not {"BlackmanWindow", "HammingWindow", "HannWindow", "STFT", "Bernoulli"} & TRT_10_3_ONNX_OPS
    # "Y" in the 10.x matrix and used by transformer exports
    assert {"DeformConv", "Gelu", "LayerNormalization", "Where", "Range", "Erf", "Clip"} <= TRT_10_3_ONNX_OPS


def _jobs(tmp_path):
    info = load_export(probe_export(tmp_path / "export"), "fp32")
    return [(info.files[g], info.specs[g]) for g in sorted(info.files)]


def test_parser_capability_is_asked_when_tensorrt_is_here(monkeypatch, tmp_path):
    jobs = _jobs(tmp_path)
    trt, log = fake_tensorrt("10.3.0.30", unsupported_ops=frozenset({"Expand"}))
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_parser, "parser_unavailable_reason", lambda: None)
    findings = checks.parser_findings(jobs)
    assert [f.rule for f in findings] == ["trt_parser"] * len(jobs)
    assert all(not f.ok and "unsupported nodes: Expand" in f.detail and "10.3.0.30" in f.detail for f in findings)
    assert [e[1] for e in log if e[0] == "supports_model_v2"] == [str(p) for p, _ in jobs]  # path: external weights
    trt, _ = fake_tensorrt("10.3.0.30")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    assert all(f.ok for f in checks.parser_findings(jobs))


def test_no_parser_finding_without_tensorrt(monkeypatch, tmp_path):
    monkeypatch.setattr(trt_parser, "parser_unavailable_reason", lambda: "TensorRT is not installed")
    assert checks.parser_findings(_jobs(tmp_path)) == []
