"""An export folder, read and verified once: what a runtime or an engine builder needs.

`load_export` reads `manifest.json` once (or takes the ArtifactDoc a caller already read),
checks it against its schema, keeps every graph file inside the folder and hashes each file
once; the returned ExportInfo carries the verified paths, so nothing downstream reads the
manifest again or re-hashes a graph. Torch-free (the runtime and the engine builder use it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dq_edge.artifact.kinds import EXPORT_KIND, EXPORT_RERUN_HINT, MANIFEST_NAME
from dq_edge.artifact.reader import ArtifactDoc, contained_file, read_artifact
from dq_edge.artifact.schemas import ExportManifestSchema
from dq_edge.atomic import sha256_file
from dq_edge.errors import ArtifactMismatchError
from dq_edge import precisions
from dq_edge.graph_io import GraphDims, GraphSpec, graph_specs
from dq_edge.tokens import TokenLayout


def parse_precisions(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """'fp32,fp16' -> ['fp32', 'fp16'] in the precision table's order; unknown names are a usage error."""
    return precisions.parse_list(text)


@dataclass(frozen=True)
class ExportInfo:
    """One precision of a verified export folder."""

    folder: Path
    precision: str
    dims: GraphDims
    layout: TokenLayout | None
    max_batch: int
    opset: int
    files: dict[str, Path]  # graph name -> ONNX file (inside the folder, sha256 verified)
    specs: dict[str, GraphSpec]  # graph name -> IO spec (as exported)
    sha256: dict[str, str]  # graph name -> sha256 of the ONNX file
    manifest: dict[str, Any]
    manifest_sha256: str  # of the manifest bytes that were read

    @property
    def max_length(self) -> int:
        return self.dims.max_length

    @property
    def graphs(self) -> tuple[str, ...]:
        return tuple(self.files)


def export_hint(folder: Path) -> str:
    return EXPORT_RERUN_HINT.format(folder=folder)


def read_export(folder: str | Path) -> ArtifactDoc:
    """The validated manifest of an export folder (read once)."""
    return read_artifact(folder, (EXPORT_KIND,), export_hint(Path(folder)))


def read_manifest(folder: str | Path) -> dict[str, Any]:
    return read_export(folder).raw


def load_export(source: str | Path | ArtifactDoc, precision: str, verify: bool = True) -> ExportInfo:
    """Read (unless given) and verify one precision of an export folder.

    Raises ArtifactMismatchError (hint: the export command) when a file is missing, outside the
    folder or its sha256 differs, or the recorded IO specs disagree with the specs this dq-edge
    derives from the stored GraphDims (the runtime allocates from those); ConfigError when the
    manifest does not follow its schema."""
    doc = source if isinstance(source, ArtifactDoc) else read_export(source)
    folder = doc.folder
    hint = export_hint(folder)
    parse_precisions(precision)
    manifest: ExportManifestSchema = doc.parsed  # type: ignore[assignment]
    entry = manifest.precisions.get(precision)
    if entry is None:
        have = ", ".join(manifest.precisions) or "none"
        raise ArtifactMismatchError(
            f"{folder} has no {precision} graphs (it has: {have})",
            f"re-run `dq-edge export MODEL --out {folder} --precision {precision} --overwrite`",
        )
    dims = manifest.dims.to_dims()
    expected = graph_specs(dims, precision, manifest.max_batch)
    files: dict[str, Path] = {}
    specs: dict[str, GraphSpec] = {}
    digests: dict[str, str] = {}
    for graph, g in entry.graphs.items():
        path = contained_file(folder, g.file, hint)
        if not path.is_file():
            raise ArtifactMismatchError(f"{path} is missing", hint)
        spec = g.spec.to_spec()
        if graph in expected and spec.to_dict() != expected[graph].to_dict():
            raise ArtifactMismatchError(f"the IO of {path.name} differs from this dq-edge's graph specs", hint)
        if verify and sha256_file(path) != g.sha256:
            raise ArtifactMismatchError(f"{path} does not match its sha256 in {MANIFEST_NAME} (modified or partial)", hint)
        files[graph], specs[graph], digests[graph] = path, spec, g.sha256
    if entry.weights is not None:
        _verify_weights(folder, entry.weights.file, entry.weights.sha256, verify, hint)
    return ExportInfo(
        folder=folder,
        precision=precision,
        dims=dims,
        layout=manifest.tokens.to_layout() if manifest.tokens is not None else None,
        max_batch=manifest.max_batch,
        opset=manifest.opset,
        files=files,
        specs=specs,
        sha256=digests,
        manifest=doc.raw,
        manifest_sha256=doc.sha256,
    )


def _verify_weights(folder: Path, name: str, digest: str, verify: bool, hint: str) -> None:
    """The shared weights file (ONNX external data the graphs point at): inside the folder, present,
    and (once per run) its recorded sha256."""
    path = contained_file(folder, name, hint)
    if not path.is_file():
        raise ArtifactMismatchError(f"{path} (the weights its graphs share) is missing", hint)
    if verify and sha256_file(path) != digest:
        raise ArtifactMismatchError(f"{path} does not match its sha256 in {MANIFEST_NAME} (modified or partial)", hint)


def verify_all(folder: str | Path) -> dict[str, ExportInfo]:
    """Every precision of an export folder, verified (the manifest read once)."""
    doc = read_export(folder)
    return {p: load_export(doc, p) for p in doc.raw["precisions"]}
