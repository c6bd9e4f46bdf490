"""Write every graph of every requested precision into a (temporary) export folder.

fp32 is always exported first (fp16 and int8 are derived from the fp32 ONNX); when fp32 was
not requested its files live in a scratch subfolder that is removed before the folder is
swapped into place.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dq_edge.export.graphs import example_inputs, graph_dims, graph_modules, load_models
from dq_edge.export.manifest import graph_file_name
from dq_edge.export.onnx_export import export_graph
from dq_edge.graph_io import CACHE_ROWS, graph_specs

EXAMPLE_BATCH = 2


def build_export_folder(req: Any, folder: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Returns the manifest fields that depend on the model: dims, layout, graphs, calibration."""
    say(f"loading {req.model}")
    models = load_models(req.model)
    return export_models(models, req, folder, say)


def export_models(models: Any, req: Any, folder: Path, say: Callable[[str], None]) -> dict[str, Any]:
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
    graphs: dict[str, dict[str, dict[str, Any]]] = {}
    if "fp32" in req.precisions:
        graphs["fp32"] = {name: {"quantized": False} for name in fp32_files}
    if "fp16" in req.precisions:
        from dq_edge.export.fp16 import convert_fp16

        fp16_specs = graph_specs(dims, "fp16", req.max_batch)
        graphs["fp16"] = {}
        for name, src in fp32_files.items():
            say(f"converting {name} to fp16")
            convert_fp16(src, folder / graph_file_name(name, "fp16"), fp16_specs[name])
            graphs["fp16"][name] = {"quantized": False}
    calibration = None
    if "int8" in req.precisions:
        graphs["int8"], calibration = _int8(req, dims, models.layout, fp32_files, folder, say)
    if scratch != folder:
        shutil.rmtree(scratch)
    return {"dims": dims, "layout": models.layout, "graphs": graphs, "calibration": calibration}


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
    say(f"calibrating int8 on {len(images)} images from {source}")
    calib = collect_feeds(fp32_files, dims, layout, images, batch=min(req.max_batch, 8))
    int8_specs = graph_specs(dims, "int8", req.max_batch)
    entries: dict[str, dict[str, Any]] = {}
    for name, src in fp32_files.items():
        dst = folder / graph_file_name(name, "int8")
        if name in UNQUANTIZED_GRAPHS:
            shutil.copyfile(src, dst)
            entries[name] = {"quantized": False}
            continue
        say(f"quantizing {name} to int8 ({len(calib.feeds.get(name, []))} calibration feeds)")
        entries[name] = quantize_graph(src, dst, calib.feeds.get(name, []), name)
        check_io(onnx.load(str(dst)), int8_specs[name], f"{name} (int8)")
    info = {"source": source, "method": "minmax", "symmetric": True, "per_channel": True, **calib.info}
    return entries, info
