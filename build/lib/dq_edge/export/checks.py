"""`dq-edge check`: validity and TensorRT-readiness rules for every graph of an export.

Rules (one Finding per graph x rule):
- checker:        onnx.checker (full, with strict shape/type inference)
- lint:           polygraphy lint (run in a subprocess worker: it captures C streams)
- trt_ops:        every op is in the TensorRT 10.3 ONNX parser set, default domain only
- control_flow:   no If/Loop/Scan/ScatterND/... in the token (transformer) graphs
- shape_tensors:  no graph input value reaches a shape input (Reshape shape, Slice bounds...)
- zero_dims:      no zero-size dims in IO, initializers or inferred shapes
- finite_consts:  float constants finite; in fp16 graphs |c| < 65504
- layernorm:      LayerNormalization as one op (no decomposed mean/variance pattern);
                  transformer graphs must contain it
- qdq_types:      Q/DQ int8 with zero point 0, scale dtype matching the float side
- trt_parser:     only where TensorRT and a CUDA device are present: the real TensorRT ONNX
                  parser's `supports_model_v2` accepts the whole graph
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from dq_edge.export.manifest import ExportInfo, verify_all
from dq_edge.export.trt_ops import FORBIDDEN_IN_STEP_GRAPHS, SHAPE_INPUTS, TRT_10_3_ONNX_OPS, TRT_VERSION
from dq_edge.errors import InputError
from dq_edge.graph_io import GraphSpec

FP16_MAX = 65504.0
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
RULES = ("checker", "lint", "trt_ops", "trt_parser", "control_flow", "shape_tensors", "zero_dims", "finite_consts", "layernorm", "qdq_types")


@dataclass(frozen=True)
class Finding:
    graph: str
    precision: str
    rule: str
    ok: bool
    detail: str = ""


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {t.name: t.data_type for t in model.graph.initializer}
    for vi in list(inferred.graph.input) + list(inferred.graph.output) + list(inferred.graph.value_info):
        types[vi.name] = vi.type.tensor_type.elem_type
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def rule_checker(model: onnx.ModelProto) -> str:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        return str(exc).splitlines()[0]
    return ""


def rule_trt_ops(model: onnx.ModelProto) -> str:
    bad = sorted(
        {f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type for n in model.graph.node
         if n.domain not in ("", "ai.onnx") or n.op_type not in TRT_10_3_ONNX_OPS}
    )
    return f"not in the TensorRT {TRT_VERSION} parser set: {', '.join(bad)}" if bad else ""


def rule_control_flow(model: onnx.ModelProto, graph: str) -> str:
    if not graph.startswith("transformer"):
        return ""
    bad = sorted({n.op_type for n in model.graph.node if n.op_type in FORBIDDEN_IN_STEP_GRAPHS})
    return f"forbidden in token graphs: {', '.join(bad)}" if bad else ""


def rule_shape_tensors(model: onnx.ModelProto) -> str:
    """Propagate 'depends on an input's values' through the graph; Shape/Size cut it."""
    tainted = {i.name for i in model.graph.input}
    hits = []
    for node in model.graph.node:
        for idx in SHAPE_INPUTS.get(node.op_type, ()):
            if idx < len(node.input) and node.input[idx] in tainted:
                hits.append(f"{node.name or node.op_type} input {idx}")
        if node.op_type not in ("Shape", "Size") and any(i in tainted for i in node.input):
            tainted.update(node.output)
    return f"graph input values reach shape inputs: {', '.join(hits[:5])}" if hits else ""


def rule_zero_dims(model: onnx.ModelProto) -> str:
    bad = [t.name for t in model.graph.initializer if 0 in t.dims]
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.input) + list(inferred.graph.output) + list(inferred.graph.value_info):
        if any(d.HasField("dim_value") and d.dim_value == 0 for d in vi.type.tensor_type.shape.dim):
            bad.append(vi.name)
    return f"zero-size tensors: {', '.join(bad[:5])}" if bad else ""


def rule_finite_consts(model: onnx.ModelProto, precision: str) -> str:
    bad = []
    for name, value in _constants(model).items():
        if value.dtype.kind != "f" or value.size == 0:
            continue
        if not np.all(np.isfinite(value)):
            bad.append(f"{name} (non-finite)")
        elif precision == "fp16" and float(np.abs(value.astype(np.float64)).max()) >= FP16_MAX:
            bad.append(f"{name} (|c| >= {FP16_MAX:g})")
    return f"constants: {', '.join(bad[:5])}" if bad else ""


def rule_layernorm(model: onnx.ModelProto, graph: str) -> str:
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type == "Pow" and node.input[0] in producer:
            sub = producer[node.input[0]]
            if sub.op_type == "Sub" and any(producer.get(i) is not None and producer[i].op_type == "ReduceMean" for i in sub.input):
                return f"decomposed normalisation at {node.name or 'Pow'} (export with opset >= 17)"
    if graph.startswith("transformer") and not any(n.op_type == "LayerNormalization" for n in model.graph.node):
        return "no LayerNormalization op in a transformer graph"
    return ""


def rule_qdq_types(model: onnx.ModelProto) -> str:
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return ""
    consts = _constants(model)
    types = _elem_types(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    bad = []
    for n in qdq:
        zp = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is None or zp.dtype != np.int8 or np.any(zp != 0):
            bad.append(f"{n.name}: zero point must be int8 zeros")
        scale_t = types.get(n.input[1])
        if n.op_type == "QuantizeLinear" and types.get(n.input[0]) != scale_t:
            bad.append(f"{n.name}: input and scale dtypes differ")
        if n.op_type == "DequantizeLinear":
            for c in consumers.get(n.output[0], []):
                others = {types.get(i) for i in c.input if i and i != n.output[0] and types.get(i) in FLOAT_TYPES}
                if c.op_type not in ("QuantizeLinear", "Cast") and others - {scale_t}:
                    bad.append(f"{n.name} -> {c.name}: mixed float dtypes")
    return "; ".join(bad[:5])


def check_model(model: onnx.ModelProto, graph: str, precision: str) -> list[Finding]:
    results = {
        "checker": rule_checker(model),
        "trt_ops": rule_trt_ops(model),
        "control_flow": rule_control_flow(model, graph),
        "shape_tensors": rule_shape_tensors(model),
        "zero_dims": rule_zero_dims(model),
        "finite_consts": rule_finite_consts(model, precision),
        "layernorm": rule_layernorm(model, graph),
        "qdq_types": rule_qdq_types(model),
    }
    return [Finding(graph, precision, rule, not detail, detail) for rule, detail in results.items()]


def lint_shapes(spec: GraphSpec) -> dict[str, list[int]]:
    """Concrete input shapes inside the spec's ranges (polygraphy's default would pick 1s)."""
    sizes = {k: min(v[1], 2 if k == "batch" else 6) for k, v in spec.ranges.items()}
    return {t.name: list(t.shape(sizes)) for t in spec.inputs}


def lint_files(jobs: list[tuple[Path, GraphSpec]], timeout: float = 600.0) -> list[str]:
    """polygraphy lint for every file in one worker process; '' = passed, else the problem."""
    with tempfile.TemporaryDirectory() as tmp:
        plan = [{"model": str(p), "shapes": lint_shapes(s), "report": str(Path(tmp) / f"{i}.json")} for i, (p, s) in enumerate(jobs)]
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan))
        proc = subprocess.run(
            [sys.executable, "-m", "dq_edge.export.lint_worker", str(plan_path)],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if proc.returncode != 0 and not all(Path(j["report"]).is_file() for j in plan):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return [f"polygraphy lint did not run: {tail[0]}"] * len(jobs)
        return [_lint_problems(Path(j["report"])) for j in plan]


def _lint_problems(report: Path) -> str:
    if not report.is_file():
        return "polygraphy lint wrote no report"
    data = json.loads(report.read_text())
    errors = [e for e in data.get("lint_entries", []) if str(e.get("level", "")).lower() in ("exception", "error")]
    return "; ".join(str(e.get("message", ""))[:160] for e in errors[:3])


def parser_findings(jobs: list[tuple[Path, GraphSpec]]) -> list[Finding]:
    """The real TensorRT parser's verdict per graph, when TensorRT and a device are here."""
    from dq_edge.export.trt_parser import parser_problems, parser_unavailable_reason  # noqa: PLC0415

    if parser_unavailable_reason() is not None:
        return []
    findings = []
    for path, spec in jobs:
        op_types = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
        problem = parser_problems(path, op_types)
        findings.append(Finding(spec.name, path.name.split(".")[-2], "trt_parser", not problem, problem))
    return findings


@dataclass
class CheckReport:
    folder: Path
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]


def check_export(folder: str | Path, lint: bool = True, precisions: list[str] | None = None) -> CheckReport:
    """Verify the manifest (sha256, versions), then run every rule on every graph."""
    infos: dict[str, ExportInfo] = verify_all(folder)
    findings: list[Finding] = []
    jobs: list[tuple[Path, GraphSpec]] = []
    chosen = {p: info for p, info in infos.items() if not precisions or p in precisions}
    missing = [p for p in precisions or [] if p not in infos]
    if missing or not any(info.files for info in chosen.values()):
        # checking nothing (or less than asked) would print "all passed": an error instead
        wanted = ", ".join(missing or precisions or ["any precision"])
        raise InputError(
            f"{folder} has no graphs of {wanted} to check (it holds: {', '.join(infos) or 'nothing'})",
            "check one of the precisions it holds, or export the missing one with `dq-edge export`",
        )
    for precision, info in chosen.items():
        for graph, path in info.files.items():
            findings += check_model(onnx.load(str(path)), graph, precision)
            jobs.append((path, info.specs[graph]))
    findings += parser_findings(jobs)
    if lint and jobs:
        for (path, spec), problem in zip(jobs, lint_files(jobs)):
            precision = path.name.split(".")[-2]
            findings.append(Finding(spec.name, precision, "lint", not problem, problem))
    order = {r: i for i, r in enumerate(RULES)}
    findings.sort(key=lambda f: (f.precision, f.graph, order[f.rule]))
    return CheckReport(Path(folder), findings)
