"""Fixtures of the runtime tests (H4). Imported explicitly by tests/test_runtime_*.py.

- `probe_step_graphs`: hand-written ONNX step graphs with the exact IO of graph_io's specs whose
  outputs make the backend's bookkeeping observable (which cache rows were written with what).
- tiny random models (VAE + transformer) exported to ONNX once per pytest process.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest

from dq_edge.graph_io import GraphDims, GraphSpec, graph_specs
from dq_edge.tokens import TokenLayout
import export_helpers

try:  # tiny models: extra torch threads only add contention on the shared 2-core machine
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass


def probe_dims() -> tuple[GraphDims, TokenLayout]:
    layout = TokenLayout(n_codes=8, coarse_hw=(2, 2), fine_hw=(4, 4))
    dims = GraphDims(
        image_size=16, z_channels=4, coarse_hw=(2, 2), fine_hw=(4, 4), router="feature",
        width=8, heads=2, position_layers=1, content_layers=2, max_length=layout.max_length,
        content_vocab=layout.content_vocab, position_vocab=layout.position_vocab(1),
    )
    return dims, layout


def _probe_graph(spec: GraphSpec, dims: GraphDims, driver: str):
    """Step graph where every present row = driver[b] + step (driver: token id, or the sum of
    `hidden` over its width) and logits[b, :] = sum of all past rows of layer 0 of sample b + driver[b].
    `hidden` (position step) = that same logits value broadcast over the width."""
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper as oh

    dtypes = {"float32": TP.FLOAT, "int64": TP.INT64, "float16": TP.FLOAT16}

    def value_info(t):
        return oh.make_tensor_value_info(t.name, dtypes[t.dtype], list(t.dims))

    nodes = [
        oh.make_node("ReduceSum", [driver, "axis1"], ["drive"], keepdims=0)
        if driver == "hidden"
        else oh.make_node("Cast", [driver], ["drive"], to=TP.FLOAT),  # [B]
        oh.make_node("Cast", ["step"], ["step_f"], to=TP.FLOAT),
        oh.make_node("Add", ["drive", "step_f"], ["row_value"]),
        oh.make_node("Reshape", ["row_value", "shape_b111"], ["row_value4"]),  # [B, 1, 1, 1]
        oh.make_node("Expand", ["row_value4", "shape_row"], ["row"]),  # [B, H, 1, D]
        oh.make_node("ReduceSum", ["past_key.0", "axes123"], ["past_sum"], keepdims=0),  # [B]
        oh.make_node("Add", ["past_sum", "drive"], ["score"]),
        oh.make_node("Unsqueeze", ["score", "axis1"], ["score2"]),  # [B, 1]
        oh.make_node("Expand", ["score2", "shape_logits"], [spec.outputs[0].name]),
    ]
    nodes += [oh.make_node("Identity", ["row"], [t.name]) for t in spec.outputs if t.name.startswith("present_")]
    initializers = [
        oh.make_tensor("shape_b111", TP.INT64, [4], [-1, 1, 1, 1]),
        oh.make_tensor("shape_row", TP.INT64, [4], [1, dims.heads, 1, dims.head_dim]),
        oh.make_tensor("axes123", TP.INT64, [3], [1, 2, 3]),
        oh.make_tensor("axis1", TP.INT64, [1], [1]),
        oh.make_tensor("shape_logits", TP.INT64, [2], [1, spec.outputs[0].dims[1]]),
    ]
    if any(t.name == "hidden" for t in spec.outputs):
        nodes.append(oh.make_node("Expand", ["score2", "shape_hidden"], ["hidden"]))
        initializers.append(oh.make_tensor("shape_hidden", TP.INT64, [2], [1, dims.width]))
    graph = oh.make_graph(
        nodes, spec.name, [value_info(t) for t in spec.inputs], [value_info(t) for t in spec.outputs], initializers
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_probe_step_graphs(folder: Path, max_batch: int) -> dict[str, Path]:
    import onnx

    dims, _ = probe_dims()
    specs = graph_specs(dims, "fp32", max_batch)
    files = {}
    for graph, driver in (("transformer_position_step", "content"), ("transformer_content_step", "hidden")):
        files[graph] = folder / f"{graph}.fp32.onnx"
        onnx.save(_probe_graph(specs[graph], dims, driver), files[graph])
    return files


@pytest.fixture(scope="session")
def probe_step_graphs(tmp_path_factory) -> dict[str, Path]:
    return write_probe_step_graphs(tmp_path_factory.mktemp("probe"), max_batch=4)


def random_ids(rng: np.random.Generator, batch: int, high: int) -> np.ndarray:
    return rng.integers(0, high, batch).astype(np.int64)


# ---------------------------------------------------------------------------- tiny exports
# The unconditional tiny model and its fp32/fp16/int8 export come from the export tests'
# helpers (built once per pytest process, shared); the class-conditional one (3 classes + a
# null class, for guidance and class checks) is exported here, fp32 only.
@functools.lru_cache(maxsize=None)
def class_model_folder() -> Path:
    from dq_edge.models.transformer import build_transformer, save_transformer
    from dq_edge.models.vae import build_vae, save_vae

    folder = export_helpers.workdir() / "class_model"
    vae = build_vae("tiny", seed=0)
    save_vae(vae, folder)
    save_transformer(build_transformer("tiny", vae.token_layout(n_classes=3, null_class=True), seed=2), folder)
    return folder


@functools.lru_cache(maxsize=None)
def class_export() -> Path:
    from dq_edge.export.pipeline import ExportRequest, export_model

    out = export_helpers.workdir() / "class_export"
    export_model(ExportRequest(model=class_model_folder(), out=out, precisions=["fp32"], max_batch=export_helpers.MAX_BATCH))
    return out


def copy_export(tmp_path: Path, source: Path | None = None) -> Path:
    """A private copy of an export folder that a test may damage."""
    target = tmp_path / "export_copy"
    shutil.copytree(source or export_helpers.tiny_export(), target)
    return target
