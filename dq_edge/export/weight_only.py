"""Weight-only precisions (w8, w4): MatMul weights block-quantized into ONNX Runtime's
`com.microsoft.MatMulNBits`, activations stay fp32; no calibration data.

Quantizer: `onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer` from the
pinned `onnxruntime` wheel (round-to-nearest, 8-bit support since ORT 1.20).
- Which nodes: every MatMul whose second input is a 2-D initializer (the transformer's
  projections and MLPs), except the output heads (QUANTIZE_HEADS). The attention score/value products have no weight and stay
  fp32; the embedding tables are Gathers (a row read per token, not a weight stream) and stay
  fp32. Conv layers of the VAE graphs are not MatMuls: encoder/dgc/decoder stay fp32 copies.
- accuracy_level 4: ONNX Runtime's CPU kernel quantizes the activations of each block to int8
  on the fly and multiplies int8 x int8 (VNNI/AVX2), which is what makes a step faster than
  fp32 here; on CUDA the level is ignored.
- block size 32 along K, symmetric (no zero points): the smallest block the CPU kernels are
  tuned for, so the error per weight stays bounded by half a step of its own 32-weight block.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import onnx

from dq_edge.errors import DQEdgeError

BLOCK_SIZE = 32
ACCURACY_LEVEL = 4  # int8 activations x intN weights on CPU
# The output heads (the MatMul before each *_logits) stay fp32: measured (docs/export.md), fp32
# heads raise w4's greedy agreement on the shipped model from 95.75 to 96.71 % (w8: 99.54 ->
# 99.60 %) and cost 1-3 % of a p6c18 batch-1 step (heads are 0.7 % of its weights).
QUANTIZE_HEADS = False
WEIGHT_ONLY_GRAPHS = ("transformer_position_step", "transformer_content_step", "transformer_prefill")


@contextlib.contextmanager
def _quiet_quantizer():
    """The quantizer logs one INFO line per node on its module logger (and advice on root)."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of MatMul nodes that multiply by a 2-D initializer (what the quantizer converts)."""
    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in inits:
            if len(inits[node.input[1]].dims) == 2:
                out.append(node.name)
    return out


def quantize_weight_only(src: Path, dst: Path, bits: int, graph: str, include_heads: bool | None = None) -> dict:
    """Write the MatMulNBits version of fp32 `src` to `dst`; returns manifest extras."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    from dq_edge.export.fp16 import name_nodes
    from dq_edge.export.int8 import head_nodes

    include_heads = QUANTIZE_HEADS if include_heads is None else include_heads
    model = onnx.load(str(src))
    name_nodes(model)
    targets = weight_matmuls(model)
    excluded = [] if include_heads else sorted(head_nodes(model) & set(targets))
    if not targets:
        raise DQEdgeError(f"{graph} has no MatMul with a weight to quantize", "export a model with a transformer")
    config = DefaultWeightOnlyQuantConfig(
        block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=ACCURACY_LEVEL, bits=bits, op_types_to_quantize=("MatMul",)
    )
    try:
        with _quiet_quantizer():
            quant = MatMulNBitsQuantizer(model, nodes_to_exclude=excluded, algo_config=config)
            quant.process()
    except Exception as exc:  # noqa: BLE001 - the quantizer raises many types (and asserts)
        raise DQEdgeError(f"{bits}-bit weight-only quantization of {graph} failed: {type(exc).__name__}: {exc}", "rerun with --debug and report it") from exc
    out = quant.model.model
    converted = sum(1 for n in out.graph.node if n.op_type == "MatMulNBits")
    if converted != len(targets) - len(excluded):
        raise DQEdgeError(
            f"{graph}: the quantizer converted {converted} of {len(targets) - len(excluded)} weight MatMuls",
            "a weight shape the MatMulNBits kernels do not take; report it",
        )
    onnx.save(out, str(dst))
    return {"quantized": True, "quantized_nodes": converted, "bits": bits, "block_size": BLOCK_SIZE, "heads_quantized": include_heads}
