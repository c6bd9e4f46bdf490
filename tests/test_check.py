"""`dq-edge check`: the exported tiny model passes every rule; crafted graphs break each rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export_helpers import tiny_export, workdir

from dq_edge.cli.main import main
from dq_edge.export import checks
from dq_edge.export.manifest import MANIFEST_NAME

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, elem, dims):
    return helper.make_tensor_value_info(name, elem, dims)


def test_exported_tiny_model_passes_every_rule_in_every_precision(capsys):
    assert main(["check", str(tiny_export())]) == 0
    out = capsys.readouterr().out
    assert "18 graphs" in out and "all passed" in out
    for rule in ("lint", "trt_ops", "shape_tensors", "qdq_types"):
        assert rule in out


def test_input_feeding_a_reshape_shape_is_a_shape_tensor():
    m = _model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")],
        [_vi("x", F, ["batch", 4]), _vi("shape", I64, [2])],
        [_vi("y", F, None)],
    )
    assert "r input 1" in checks.rule_shape_tensors(m)
    # through Shape the dependence is on the input's shape only: fine
    ok = _model(
        [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])],
        [_vi("x", F, ["batch", 4])],
        [_vi("y", F, None)],
    )
    assert checks.rule_shape_tensors(ok) == ""


def test_step_index_used_as_slice_bound_is_caught():
    m = _model(
        [helper.make_node("Slice", ["cache", "zero", "step", "axis"], ["y"], name="slice_by_step")],
        [_vi("cache", F, [1, 8]), _vi("step", I64, [1])],
        [_vi("y", F, None)],
        [numpy_helper.from_array(np.array([0], np.int64), "zero"), numpy_helper.from_array(np.array([1], np.int64), "axis")],
    )
    assert "slice_by_step" in checks.rule_shape_tensors(m)


def test_non_finite_and_fp16_overflowing_constants():
    inf = numpy_helper.from_array(np.array([-np.inf, 0], np.float32), "mask")
    m = _model([helper.make_node("Add", ["x", "mask"], ["y"])], [_vi("x", F, [2])], [_vi("y", F, [2])], [inf])
    assert "non-finite" in checks.rule_finite_consts(m, "fp32")
    big = numpy_helper.from_array(np.array([-1e9, 0], np.float32), "mask")
    m = _model([helper.make_node("Add", ["x", "mask"], ["y"])], [_vi("x", F, [2])], [_vi("y", F, [2])], [big])
    assert checks.rule_finite_consts(m, "fp32") == ""
    assert "65504" in checks.rule_finite_consts(m, "fp16")


def test_control_flow_and_foreign_ops():
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["a"])], "t", [], [_vi("a", F, [2])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=then)
    m = _model([node], [_vi("c", TensorProto.BOOL, []), _vi("x", F, [2])], [_vi("y", F, [2])])
    assert "If" in checks.rule_control_flow(m, "transformer_position_step")
    assert checks.rule_control_flow(m, "decoder") == ""
    ms = helper.make_node("FusedMatMul", ["x", "x"], ["y"], domain="com.microsoft")
    m = _model([ms], [_vi("x", F, [2, 2])], [_vi("y", F, [2, 2])])
    assert "com.microsoft::FusedMatMul" in checks.rule_trt_ops(m)
    m = _model([helper.make_node("MatMulInteger", ["a", "a"], ["y"])], [_vi("a", TensorProto.INT8, [2, 2])], [_vi("y", TensorProto.INT32, [2, 2])])
    assert "MatMulInteger" in checks.rule_trt_ops(m)


def test_decomposed_layernorm_and_missing_layernorm():
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1]),
        helper.make_node("Sub", ["x", "mu"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["d2"], name="pow"),
    ]
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    m = _model(nodes, [_vi("x", F, [2, 4])], [_vi("d2", F, [2, 4])], [two], opset=13)
    assert "decomposed" in checks.rule_layernorm(m, "encoder")
    plain = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", F, [2])], [_vi("y", F, [2])])
    assert "no LayerNormalization" in checks.rule_layernorm(plain, "transformer_prefill")


def test_zero_size_dims():
    empty = numpy_helper.from_array(np.zeros((0, 4), np.float32), "empty")
    m = _model([helper.make_node("Concat", ["x", "empty"], ["y"], axis=0)], [_vi("x", F, [2, 4])], [_vi("y", F, [2, 4])], [empty])
    assert "empty" in checks.rule_zero_dims(m)


def test_qdq_zero_point_and_dtypes():
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    zp_bad = numpy_helper.from_array(np.array(3, np.int8), "zp")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], name="dq"),
    ]
    m = _model(nodes, [_vi("x", F, [2])], [_vi("y", F, [2])], [scale, zp_bad], opset=17)
    assert "zero point" in checks.rule_qdq_types(m)
    zp = numpy_helper.from_array(np.array(0, np.int8), "zp")
    h = _vi("h", TensorProto.FLOAT16, [2])
    mixed = nodes + [helper.make_node("Add", ["y", "h"], ["z"], name="add")]
    m = _model(mixed, [_vi("x", F, [2]), h], [_vi("z", F, [2])], [scale, zp])
    assert "mixed float dtypes" in checks.rule_qdq_types(m)


def test_check_cli_fails_on_a_violating_export(tmp_path, capsys):
    """A graph with a -inf mask and an If node, registered with a valid sha256: exit 1, table."""
    folder = tmp_path / "bad"
    shutil.copytree(tiny_export(), folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    entry = manifest["precisions"]["fp16"]["graphs"]["transformer_content_step"]
    model = onnx.load(str(folder / entry["file"]))
    model.graph.initializer.append(numpy_helper.from_array(np.array([-np.inf], np.float16), "minus_inf"))
    onnx.save(model, str(folder / entry["file"]))
    from dq_edge.atomic import sha256_file

    entry["sha256"] = sha256_file(folder / entry["file"])
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert main(["check", str(folder), "--no-lint", "--precision", "fp16"]) == 1
    out = capsys.readouterr().out
    assert "FAIL fp16 transformer_content_step finite_consts" in out and "minus_inf" in out
    assert "6 graphs" in out


def test_check_cli_refuses_a_modified_file(tmp_path, capsys):
    folder = tmp_path / "tampered"
    shutil.copytree(tiny_export(), folder)
    with open(folder / "decoder.fp32.onnx", "ab") as fh:
        fh.write(b"\0")
    assert main(["check", str(folder), "--no-lint"]) == 1
    err = capsys.readouterr().err
    assert "sha256" in err and "dq-edge export" in err
    assert main(["check", str(workdir() / "does-not-exist")]) == 1


def export_without_int8(tmp_path) -> Path:
    """A copy of the tiny export with its int8 graphs and manifest entry removed."""
    folder = tmp_path / "no-int8"
    shutil.copytree(tiny_export(), folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    for entry in manifest["precisions"].pop("int8")["graphs"].values():
        (folder / entry["file"]).unlink()
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


def test_checking_nothing_is_an_error(tmp_path, capsys):
    folder = export_without_int8(tmp_path)
    assert main(["check", str(folder), "--no-lint", "--precision", "int8"]) == 1
    out, err = capsys.readouterr()
    assert "all passed" not in out
    assert err.startswith("error: ") and "no graphs of int8 to check (it holds: fp32, fp16)" in err and err.count("\n") == 1
