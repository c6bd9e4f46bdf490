"""torch.onnx.export of one graph, driven by its GraphSpec (names, dtypes, dynamic dims).

Two exporters are supported: "legacy" (TorchScript tracing, `dynamic_axes`) and "dynamo"
(torch.export, `dynamic_shapes`). Both give graphs that pass every `dq-edge check` rule (no
If/Loop/ScatterND, LayerNormalization as one op, opset >= 17) and agree to 1e-7 on the tiny
model. dynamo's graphs are about 3x smaller (no Constant/Identity/Shape clutter) but it takes
about 5x longer (tiny model, fp32: 18 s vs 3.6 s CPU); TensorRT and ONNX Runtime fold the
clutter away, so the fast legacy tracer is the default. Whatever the exporter, the IO of the
written file is rewritten to the spec's symbolic dim names and then checked against the spec.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from dq_edge.errors import ConfigError, DQEdgeError
from dq_edge.graph_io import GraphSpec

EXPORTERS = ("legacy", "dynamo")
MIN_OPSET = 17
DEFAULT_OPSET = 17
_ONNX_DTYPES = {"float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16, "int64": onnx.TensorProto.INT64}


class ExportFailedError(DQEdgeError):
    """torch.onnx.export failed or produced a graph whose IO differs from its spec."""


def _dynamic_axes(spec: GraphSpec) -> dict[str, dict[int, str]]:
    axes = {}
    for t in spec.inputs + spec.outputs:
        sym = {i: d for i, d in enumerate(t.dims) if isinstance(d, str)}
        if sym:
            axes[t.name] = sym
    return axes


def _dynamic_shapes(spec: GraphSpec, module: nn.Module) -> tuple:
    """Per-input dynamic dims, structured like forward's arguments (a `*past_kv` varargs
    parameter takes its inputs as one nested tuple, as torch.export requires)."""
    dims = {}
    for name, (lo, _opt, hi) in spec.ranges.items():
        # torch.export refuses min=1 for a dim it may see as 0/1-specialised; 1 is still allowed at run time
        dims[name] = torch.export.Dim(name, min=max(lo, 1), max=hi)
    shapes = [{i: dims[d] for i, d in enumerate(t.dims) if isinstance(d, str)} or None for t in spec.inputs]
    params = list(inspect.signature(module.forward).parameters.values())
    fixed = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return tuple(shapes[: len(fixed)]) + (tuple(shapes[len(fixed) :]),)
    return tuple(shapes)


def set_io_dims(model: onnx.ModelProto, spec: GraphSpec) -> None:
    """Name the symbolic dims of every graph input/output exactly as the spec does."""
    by_name = {t.name: t for t in spec.inputs + spec.outputs}
    for vi in list(model.graph.input) + list(model.graph.output):
        t = by_name.get(vi.name)
        if t is None:
            continue
        shape = vi.type.tensor_type.shape
        del shape.dim[:]
        for d in t.dims:
            dim = shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d


def check_io(model: onnx.ModelProto, spec: GraphSpec, what: str) -> None:
    """The file's inputs/outputs have the spec's names, order and dtypes."""
    for kind, actual, wanted in (("inputs", model.graph.input, spec.inputs), ("outputs", model.graph.output, spec.outputs)):
        names = [vi.name for vi in actual]
        if names != [t.name for t in wanted]:
            raise ExportFailedError(
                f"{what}: exported {kind} {names} differ from the spec {[t.name for t in wanted]}",
                "the module's forward must take/return exactly the graph_io spec (unused inputs are dropped by the tracer)",
            )
        for vi, t in zip(actual, wanted):
            if vi.type.tensor_type.elem_type != _ONNX_DTYPES[t.dtype]:
                got = onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type)
                raise ExportFailedError(f"{what}: {kind[:-1]} {t.name} is {got}, the spec says {t.dtype}", "fix the module's dtype")


def export_graph(
    module: nn.Module,
    spec: GraphSpec,
    example: tuple[torch.Tensor, ...],
    path: Path,
    opset: int = DEFAULT_OPSET,
    exporter: str = "legacy",
) -> onnx.ModelProto:
    """Export `module` to `path` (a temp location; the caller moves it into place)."""
    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} is too old", f"use --opset {MIN_OPSET} or newer (LayerNormalization needs 17)")
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter {exporter!r}", f"choose from {', '.join(EXPORTERS)}")
    input_names = [t.name for t in spec.inputs]
    output_names = [t.name for t in spec.outputs]
    try:
        with _quiet():
            if exporter == "legacy":
                torch.onnx.export(
                    module, example, str(path), dynamo=False, opset_version=opset,
                    input_names=input_names, output_names=output_names,
                    dynamic_axes=_dynamic_axes(spec), do_constant_folding=True,
                )
            else:
                program = torch.onnx.export(
                    module, example, dynamo=True, opset_version=opset,
                    input_names=input_names, output_names=output_names,
                    dynamic_shapes=_dynamic_shapes(spec, module), optimize=True,
                )
                program.save(str(path), external_data=False)
    except DQEdgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - exporter errors come in many types
        raise ExportFailedError(
            f"torch.onnx.export ({exporter}) failed for graph {spec.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "try the other exporter with --exporter, or rerun with --debug",
        ) from exc
    model = onnx.load(str(path))
    set_io_dims(model, spec)
    check_io(model, spec, spec.name)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and deprecation chatter; library code stays silent."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
