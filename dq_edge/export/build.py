"""Write every graph of every requested precision into a (temporary) export folder.

fp32 is always exported first (every other precision of dq_edge.precisions is derived from the
fp32 ONNX); when fp32 was
not requested its files live in a scratch subfolder that is removed before the folder is
swapped into place.
"""

from __future__ import annotations

import gc
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dq_edge import precisions
from dq_edge.export.graphs import example_inputs, graph_dims, graph_modules, load_models
from dq_edge.export.manifest import graph_file_name
from dq_edge.export.onnx_export import export_graph
from dq_edge.graph_io import CACHE_ROWS, graph_specs

EXAMPLE_BATCH = 2


def build_export_folder(req: Any, folder: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Returns the manifest fields that depend on the model: dims, layout, graphs, calibration."""
    say(f"loading {req.model}")
    dims, layout, fp32_files, scratch = export_fp32(load_models(req.model), req, folder, say)
    gc.collect()  # the torch models are no longer referenced: free them before calibration
    return derive_precisions(dims, layout, fp32_files, scratch, req, folder, say)


def export_fp32(models: Any, req: Any, folder: Path, say: Callable[[str], None]) -> tuple[Any, Any, dict[str, Path], Path]:
    """Every graph in fp32 (into `folder`, or a scratch subfolder when fp32 was not requested)."""
    torch.manual_seed(0)
    dims = graph_dims(models)
    modules = graph_modules(models)
    scratch = folder if "fp32" in req.precisions else folder / ".fp32"
    scratch.mkdir(exist_ok=True)
    fp32_specs = graph_specs(dims, "fp32", req.max_batch)
    fp32_files: dict[str, Path] = {}
    for name, module in modules.items():
        spec = fp32_specs[name]
        # cache rows below L: the traced graph must take its length from the cache, not from L
        sizes = {"batch": EXAMPLE_BATCH, "tokens": min(dims.max_length, 6), CACHE_ROWS: max(2, dims.max_length - 1)}
        say(f"exporting {name} (fp32)")
        path = scratch / graph_file_name(name, "fp32")
        with torch.no_grad():
            export_graph(module, spec, example_inputs(spec, dims, sizes), path, req.opset, req.exporter)
        fp32_files[name] = path
    return dims, models.layout, fp32_files, scratch


def derive_precisions(dims, layout, fp32_files: dict[str, Path], scratch: Path, req: Any, folder: Path, say) -> dict[str, Any]:
    """Every requested precision from the fp32 files (the producer named in dq_edge.precisions)."""
    graphs: dict[str, dict[str, dict[str, Any]]] = {}
    calibration = None
    for name in req.precisions:
        produced_by = precisions.get(name).produced_by
        if produced_by == "torch.onnx":
            graphs[name] = {g: {"quantized": False} for g in fp32_files}
        elif produced_by == "fp16":
            graphs[name] = _fp16(dims, req.max_batch, fp32_files, folder, say)
        elif produced_by == "int8-qdq":
            graphs[name], calibration = _int8(req, dims, layout, fp32_files, folder, say)
        elif produced_by == "weight-only":
            graphs[name] = _weight_only(name, fp32_files, folder, say)
        else:  # a table entry without its producer here is a programming error
            raise AssertionError(f"no producer for precision {name} ({produced_by})")
    if scratch != folder:
        shutil.rmtree(scratch)
    return {"dims": dims, "layout": layout, "graphs": graphs, "calibration": calibration}


def _fp16(dims, max_batch: int, fp32_files: dict[str, Path], folder: Path, say) -> dict[str, dict[str, Any]]:
    from dq_edge.export.fp16 import convert_fp16

    specs = graph_specs(dims, "fp16", max_batch)
    entries = {}
    for name, src in fp32_files.items():
        say(f"converting {name} to fp16")
        convert_fp16(src, folder / graph_file_name(name, "fp16"), specs[name])
        entries[name] = {"quantized": False}
    return entries


def _weight_only(precision: str, fp32_files: dict[str, Path], folder: Path, say) -> dict[str, dict[str, Any]]:
    """Transformer graphs get MatMulNBits weights; the VAE graphs (convolutions) are fp32 copies."""
    from dq_edge.export.weight_only import WEIGHT_ONLY_GRAPHS, quantize_weight_only

    bits = precisions.get(precision).weight_bits
    entries: dict[str, dict[str, Any]] = {}
    for name, src in fp32_files.items():
        dst = folder / graph_file_name(name, precision)
        if name not in WEIGHT_ONLY_GRAPHS:
            shutil.copyfile(src, dst)
            entries[name] = {"quantized": False}
            continue
        say(f"quantizing {name} weights to {bits} bits (MatMulNBits)")
        entries[name] = quantize_weight_only(src, dst, bits, name)
    return entries


def calibration_images(req: Any, image_size: int) -> tuple[np.ndarray, str]:
    from dq_edge.data.batches import to_float
    from dq_edge.data.registry import load_dataset

    spec = req.calib_dataset or str(req.calib_images)
    images = load_dataset(spec, split="train", image_size=image_size).subset(req.calib_num)
    return to_float(images.images), spec


def _int8(req: Any, dims, layout, fp32_files: dict[str, Path], folder: Path, say) -> tuple[dict, dict]:
    from dq_edge.export.int8 import UNQUANTIZED_GRAPHS, collect_feeds, quantize_graph
    from dq_edge.export.onnx_export import check_io
    import onnx

    images, source = calibration_images(req, dims.image_size)
    say(f"calibrating int8 on {len(images)} images from {source} (step inputs streamed)")
    calib = collect_feeds(fp32_files, dims, layout, images, batch=min(req.max_batch, 8))
    int8_specs = graph_specs(dims, "int8", req.max_batch)
    entries: dict[str, dict[str, Any]] = {}
    for name, src in fp32_files.items():
        dst = folder / graph_file_name(name, "int8")
        if name in UNQUANTIZED_GRAPHS:
            shutil.copyfile(src, dst)
            entries[name] = {"quantized": False}
            continue
        say(f"quantizing {name} to int8")
        entries[name] = quantize_graph(src, dst, calib.source(name), name)
        check_io(onnx.load(str(dst)), int8_specs[name], f"{name} (int8)")
    info = {"source": source, "method": "minmax", "symmetric": True, "per_channel": True, **calib.info}
    return entries, info
