"""The export folder's `manifest.json`: what `dq-edge export` writes. Torch-free.

Reading and verifying (`load_export`, `read_manifest`, `verify_all`) live in the torch-free
`dq_edge.artifact.export` and are re-exported here; this module writes the manifest.

manifest.json:
    {"format": "dq-edge-export", "format_version": 1, "dq_edge_version": "0.1.0",
     "source": {"model_hash": sha256 of model.safetensors, "model_path": "..."},
     "dims": GraphDims, "tokens": TokenLayout | null, "max_batch": B, "max_length": L,
     "opset": 17, "options": {...export options...}, "calibration": {...} | null,
     "precisions": {"fp32": {"graphs": {"encoder": {"file", "sha256", "spec", "quantized"}, ...}}, ...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dq_edge import EXPORT_FORMAT_VERSION, __version__
from dq_edge.artifact.export import ExportInfo, load_export, parse_precisions, read_manifest, verify_all
from dq_edge.artifact.kinds import EXPORT_KIND, EXPORT_RERUN_HINT, MANIFEST_NAME
from dq_edge.atomic import sha256_file, write_json
from dq_edge.graph_io import GraphDims, graph_specs
from dq_edge import precisions
from dq_edge.tokens import TokenLayout

FORMAT_NAME = EXPORT_KIND.format_name
RERUN_HINT = EXPORT_RERUN_HINT
__all__ = [
    "ExportInfo", "MANIFEST_NAME", "build_manifest", "graph_file_name", "load_export", "parse_precisions",
    "read_manifest", "same_export", "verify_all", "write_manifest",
]


def graph_file_name(graph: str, precision: str) -> str:
    return f"{graph}.{precisions.get(precision).suffix}.onnx"


def build_manifest(
    *,
    dims: GraphDims,
    layout: TokenLayout | None,
    max_batch: int,
    opset: int,
    model_hash: str,
    model_path: str,
    options: dict[str, Any],
    calibration: dict[str, Any] | None,
    folder: Path,
    graphs: dict[str, dict[str, dict[str, Any]]],
) -> dict[str, Any]:
    """`graphs[precision][graph]` = {"quantized": bool, ...}; files must already exist in `folder`
    under `graph_file_name` (their sha256 is computed here)."""
    precisions: dict[str, Any] = {}
    for precision, entries in graphs.items():
        specs = graph_specs(dims, precision, max_batch)
        out = {}
        for graph, extra in entries.items():
            name = graph_file_name(graph, precision)
            out[graph] = {
                "file": name,
                "sha256": sha256_file(folder / name),
                "spec": specs[graph].to_dict(),
                **extra,
            }
        precisions[precision] = {"graphs": out}
    return {
        "format": FORMAT_NAME,
        "format_version": EXPORT_FORMAT_VERSION,
        "dq_edge_version": __version__,
        "source": {"model_hash": model_hash, "model_path": model_path},
        "dims": dims.to_dict(),
        "tokens": layout.to_dict() if layout is not None else None,
        "max_batch": max_batch,
        "max_length": dims.max_length,
        "opset": opset,
        "options": options,
        "calibration": calibration,
        "precisions": precisions,
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    write_json(Path(folder) / MANIFEST_NAME, manifest)


def same_export(manifest: dict[str, Any], request: dict[str, Any]) -> bool:
    """True when an existing manifest was produced from the same model with the same options
    (used by `dq-edge export` to report "up to date" instead of exporting again)."""
    keys = ("format_version", "dq_edge_version", "max_batch", "opset", "options")
    if any(manifest.get(k) != request.get(k) for k in keys):
        return False
    if manifest.get("source", {}).get("model_hash") != request["source"]["model_hash"]:
        return False
    return set(manifest.get("precisions", {})) == set(request["precisions"])
