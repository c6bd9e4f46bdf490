"""fp16 graphs from the fp32 ONNX, with fp32 islands where fp16 loses accuracy or overflows.

Converter: `onnxruntime.transformers.float16.convert_float_to_float16` (the float16 converter
of onnxconverter-common, shipped inside the pinned `onnxruntime` wheel, so no extra package).
- op block list: normalisations, softmax, reductions and exponentials stay fp32 (LayerNorm
  variance and softmax sums overflow or lose precision in fp16);
- residual sums (Add of two computed tensors: the transformer's residual stream, the ResNet
  skips) stay fp32, so the stream accumulates in fp32;
- the dgc graph (router + nearest-code search) computes entirely in fp32: a code flipped by
  fp16 rounding is a different token; only its fp16 inputs are cast;
- graph IO follows `graph_io.activation_dtype`: images and logits stay fp32 (keep_io_types),
  features / hidden states / KV caches become fp16;
- initializers are clipped to the fp16 range (finite masks stay finite: |c| <= 65504).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.transformers import float16 as ort_float16
from onnxruntime.transformers.onnx_model import OnnxModel

from dq_edge.errors import DQEdgeError
from dq_edge.export.onnx_export import check_io, set_io_dims
from dq_edge.graph_io import FLOAT16, FLOAT32, GraphSpec

FP32_OPS = (
    "LayerNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "BatchNormalization",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Erf",
    "ArgMin",
    "ArgMax",
)
FULL_FP32_GRAPHS = ("dgc",)


def name_nodes(model: onnx.ModelProto) -> None:
    """The converter's node block list works by name; give unnamed nodes a stable one."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def residual_adds(model: onnx.ModelProto) -> list[str]:
    """Adds of two computed tensors (no initializer / Constant operand): residual sums."""
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "Add" and not (set(n.input) & constants)]


def fp16_inputs_only(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Make inputs `names` fp16 and cast each once to fp32 for the unchanged fp32 body."""
    for vi in model.graph.input:
        if vi.name not in names:
            continue
        vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
        inner = f"{vi.name}_fp32"
        for node in model.graph.node:
            node.input[:] = [inner if i == vi.name else i for i in node.input]
        cast = onnx.helper.make_node("Cast", [vi.name], [inner], name=f"{vi.name}_to_fp32", to=onnx.TensorProto.FLOAT)
        model.graph.node.insert(0, cast)
    return model


def _drop_duplicate_nodes(model: onnx.ModelProto) -> None:
    """The converter inserts one Cast per blocked consumer under the same output name when a
    tensor feeds several blocked nodes; identical producers of one name are one node."""
    seen: set[str] = set()
    keep = []
    for node in model.graph.node:
        key = node.SerializeToString(deterministic=True)
        if set(node.output) & seen:
            if key not in seen:
                raise DQEdgeError(f"fp16 conversion produced two different nodes writing {list(node.output)}", "report it")
            continue
        seen.update(node.output)
        seen.add(key)
        keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _convert(model: onnx.ModelProto, spec: GraphSpec) -> onnx.ModelProto:
    keep_fp32_io = [t.name for t in spec.inputs + spec.outputs if t.dtype == FLOAT32]
    try:
        out = ort_float16.convert_float_to_float16(
            model,
            keep_io_types=keep_fp32_io,
            op_block_list=list(ort_float16.DEFAULT_OP_BLOCK_LIST) + list(FP32_OPS),
            node_block_list=residual_adds(model),
        )
    except Exception as exc:  # noqa: BLE001 - converter raises bare exceptions
        raise DQEdgeError(f"fp16 conversion of {spec.name} failed: {type(exc).__name__}: {exc}", "rerun with --debug and report it") from exc
    _drop_duplicate_nodes(out)
    return out


def convert_fp16(src: Path, dst: Path, spec: GraphSpec) -> onnx.ModelProto:
    """Convert the fp32 file `src` of graph `spec.name` into `dst`; IO as in the fp16 `spec`."""
    model = onnx.load(str(src))
    del model.graph.value_info[:]  # stale fp32 annotations (dynamo writes them) would contradict the new types
    name_nodes(model)
    if spec.name in FULL_FP32_GRAPHS:
        out = fp16_inputs_only(model, [t.name for t in spec.inputs if t.dtype == FLOAT16])
    else:
        out = _convert(model, spec)
    OnnxModel(out).topological_sort()  # the converter appends its Cast nodes at the end
    set_io_dims(out, spec)
    check_io(out, spec, f"{spec.name} (fp16)")
    onnx.checker.check_model(out, full_check=True)
    onnx.save(out, str(dst))
    return out
