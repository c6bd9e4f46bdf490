"""The real TensorRT ONNX parser's verdict on a graph, for `dq-edge check` on a GPU machine.

The op table (`trt_ops`) is a name-level approximation; where TensorRT and a CUDA device are
present (a Builder needs a device), the parser itself is asked. API as in TensorRT 10.1+
(`python/src/parsers/pyOnnx.cpp`): `OnnxParser.supports_model_v2(model, path)` partitions the
model into subgraphs, `num_subgraphs`, `is_subgraph_supported(i)`, `get_subgraph_nodes(i)`
(node indices), and `num_errors` / `get_error(i).desc()` say why.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from dq_edge.engines_probe import gpu_unavailable_reason


def parser_unavailable_reason() -> str | None:
    return gpu_unavailable_reason()


def parser_problems(path: Path, op_types: list[str]) -> str:
    """'' when TensorRT's parser supports the whole model, else what it refused (one line).
    `op_types`: the model's node op types in graph order (to name the refused nodes)."""
    trt = importlib.import_module("tensorrt")
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    if parser.supports_model_v2(Path(path).read_bytes(), str(path)):
        return ""
    refused: list[str] = []
    for i in range(parser.num_subgraphs):
        if not parser.is_subgraph_supported(i):
            refused += [op_types[n] if 0 <= n < len(op_types) else f"node {n}" for n in parser.get_subgraph_nodes(i)]
    errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
    what = f"unsupported nodes: {', '.join(sorted(set(refused)))}" if refused else "unsupported"
    return f"TensorRT {trt.__version__} parser: {what}" + (f" ({errors[0]})" if errors else "")
