"""The export folder's `manifest.json`: write, read and verify it. Torch-free.

The runtime (ONNX Runtime backend) and the engine builder call `load_export(folder, precision)`
on devices that have neither torch nor onnx; it verifies the format version and the sha256 of
every ONNX file it hands out, so a stale or edited export fails with the command to rerun.

manifest.json:
    {"format": "dq-edge-export", "format_version": 1, "dq_edge_version": "0.1.0",
     "source": {"model_hash": sha256 of model.safetensors, "model_path": "..."},
     "dims": GraphDims, "tokens": TokenLayout | null, "max_batch": B, "max_length": L,
     "opset": 17, "options": {...export options...}, "calibration": {...} | null,
     "precisions": {"fp32": {"graphs": {"encoder": {"file", "sha256", "spec", "quantized"}, ...}}, ...}}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dq_edge import FORMAT_VERSION, __version__
from dq_edge.artifact import ArtifactKind, read_artifact_json
from dq_edge.atomic import sha256_file, write_json
from dq_edge.errors import ArtifactMismatchError, ConfigError
from dq_edge import precisions
from dq_edge.graph_io import GraphDims, GraphSpec, TensorSpec, graph_specs
from dq_edge.tokens import TokenLayout

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "dq-edge-export"
RERUN_HINT = "re-run `dq-edge export MODEL --out {folder}` (add --force to replace it)"


def graph_file_name(graph: str, precision: str) -> str:
    return f"{graph}.{precisions.get(precision).suffix}.onnx"


def parse_precisions(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """'fp32,w8' -> ['fp32', 'w8'] in the table's order; unknown names are a usage error."""
    return precisions.parse_list(text)


@dataclass(frozen=True)
class ExportInfo:
    """One precision of a verified export folder: what a runtime or engine builder needs."""

    folder: Path
    precision: str
    dims: GraphDims
    layout: TokenLayout | None
    max_batch: int
    opset: int
    files: dict[str, Path]  # graph name -> ONNX file
    specs: dict[str, GraphSpec]  # graph name -> IO spec (as exported)
    sha256: dict[str, str]  # graph name -> sha256 of the ONNX file
    manifest: dict[str, Any]

    @property
    def max_length(self) -> int:
        return self.dims.max_length

    @property
    def graphs(self) -> tuple[str, ...]:
        return tuple(self.files)


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
        "format_version": FORMAT_VERSION,
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


EXPORT_KIND = ArtifactKind(
    file_name=MANIFEST_NAME,
    format_name=FORMAT_NAME,
    format_version=FORMAT_VERSION,
    label="export",
    folder_noun="a dq-edge export folder",
    file_noun="a dq-edge export manifest",
    wrong_kind_hint="pass a folder written by `dq-edge export`",
)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    return read_artifact_json(folder, EXPORT_KIND, RERUN_HINT.format(folder=Path(folder)))


def _spec_from_dict(d: dict[str, Any]) -> GraphSpec:
    def tensors(items: list[dict]) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(t["name"], t["dtype"], tuple(t["dims"])) for t in items)

    ranges = {k: tuple(v) for k, v in d.get("ranges", {}).items()}
    return GraphSpec(d["name"], tensors(d["inputs"]), tensors(d["outputs"]), ranges)


def load_export(folder: str | Path, precision: str, verify: bool = True) -> ExportInfo:
    """Read and verify one precision of an export folder.

    Raises ArtifactMismatchError (hint: the export command) when the format version differs,
    a file is missing or its sha256 does not match, or the recorded IO specs disagree with the
    specs this dq-edge derives from the stored GraphDims (the runtime allocates from those)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    hint = RERUN_HINT.format(folder=folder)
    parse_precisions(precision)
    entry = manifest.get("precisions", {}).get(precision)
    if entry is None:
        have = ", ".join(manifest.get("precisions", {})) or "none"
        raise ArtifactMismatchError(
            f"{folder} has no {precision} graphs (it has: {have})",
            f"re-run `dq-edge export MODEL --out {folder} --precision {precision} --force`",
        )
    try:
        dims = GraphDims.from_dict(manifest["dims"])
        max_batch = int(manifest["max_batch"])
        layout = TokenLayout.from_dict(manifest["tokens"]) if manifest.get("tokens") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{folder / MANIFEST_NAME} is incomplete: {exc}", hint) from exc
    expected = graph_specs(dims, precision, max_batch)
    files: dict[str, Path] = {}
    specs: dict[str, GraphSpec] = {}
    digests: dict[str, str] = {}
    for graph, g in entry["graphs"].items():
        path = folder / g["file"]
        if not path.is_file():
            raise ArtifactMismatchError(f"{path} is missing", hint)
        if verify and sha256_file(path) != g["sha256"]:
            raise ArtifactMismatchError(f"{path} does not match its sha256 in {MANIFEST_NAME} (modified or partial)", hint)
        spec = _spec_from_dict(g["spec"])
        if graph in expected and spec.to_dict() != expected[graph].to_dict():
            raise ArtifactMismatchError(f"the IO of {path.name} differs from this dq-edge's graph specs", hint)
        files[graph], specs[graph], digests[graph] = path, spec, g["sha256"]
    return ExportInfo(
        folder=folder,
        precision=precision,
        dims=dims,
        layout=layout,
        max_batch=max_batch,
        opset=int(manifest["opset"]),
        files=files,
        specs=specs,
        sha256=digests,
        manifest=manifest,
    )


def same_export(manifest: dict[str, Any], request: dict[str, Any]) -> bool:
    """True when an existing manifest was produced from the same model with the same options
    (used by `dq-edge export` to report "up to date" instead of exporting again)."""
    keys = ("format_version", "dq_edge_version", "max_batch", "opset", "options")
    if any(manifest.get(k) != request.get(k) for k in keys):
        return False
    if manifest.get("source", {}).get("model_hash") != request["source"]["model_hash"]:
        return False
    return set(manifest.get("precisions", {})) == set(request["precisions"])


def verify_all(folder: str | Path) -> dict[str, ExportInfo]:
    """Every precision of an export folder, verified."""
    manifest = read_manifest(folder)
    return {p: load_export(folder, p) for p in manifest.get("precisions", {})}
