"""The engine folder's `manifest.json`: write, read, and refuse mismatched or stale engines.

    {"format": "dq-edge-engines", "format_version": 1, "dq_edge_version": "...",
     "target": {"tensorrt_version": "10.3.0.30", "gpu_name": "Orin", "compute_capability": [8, 7]},
     "precision": "fp16", "max_batch": 8, "network": {"strongly_typed": true, "builder_flags": []},
     "build": {"workspace_gib": 2.0, "opt_level": 3, "timing_cache": null},
     "export": {"folder": "...", "manifest_sha256": "..."},
     "dims": {...GraphDims}, "layout": {...TokenLayout},
     "engines": {"<graph>": {"file": "...plan", "sha256": "...", "onnx_file": "...", "onnx_sha256": "...",
                             "profile": {"<input>": {"min": [...], "opt": [...], "max": [...]}},
                             "io": {...GraphSpec}}}}

The folder is self-describing: the TensorRT backend needs only this folder (dims, token layout,
IO specs), not the export it came from. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dq_edge import __version__
from dq_edge.artifact.kinds import ENGINE_FORMAT_VERSION, ENGINE_KIND, ENGINE_REBUILD_HINT
from dq_edge.artifact.reader import contained_file, read_artifact
from dq_edge.atomic import sha256_file, write_json
from dq_edge.engines.plan import (
    BuildOptions,
    ExportSource,
    GpuTarget,
    GraphPlan,
    NetworkTyping,
    profile_to_dict,
    rebuild_command,
    trtexec_command,
)
from dq_edge.errors import ArtifactMismatchError, DQEdgeError
from dq_edge.graph_io import GraphDims
from dq_edge.tokens import TokenLayout

MANIFEST_NAME = ENGINE_KIND.file_name
FORMAT_NAME = ENGINE_KIND.format_name
FORMAT_VERSION = ENGINE_FORMAT_VERSION


@dataclass(frozen=True)
class EngineManifest:
    """An engine folder's manifest, validated against its schema when read (`read_manifest`)."""

    folder: Path
    raw: dict[str, Any]
    sha256: str = ""  # of the manifest bytes that were read

    @property
    def target(self) -> GpuTarget:
        return GpuTarget.from_dict(self.raw["target"])

    @property
    def precision(self) -> str:
        return str(self.raw["precision"])

    @property
    def max_batch(self) -> int:
        return int(self.raw["max_batch"])

    @property
    def dims(self) -> GraphDims:
        return GraphDims.from_dict(self.raw["dims"])

    @property
    def layout(self) -> TokenLayout | None:
        return TokenLayout.from_dict(self.raw["layout"]) if self.raw["layout"] else None

    @property
    def engines(self) -> dict[str, dict[str, Any]]:
        return dict(self.raw["engines"])

    @property
    def export_folder(self) -> str:
        return str(self.raw["export"]["folder"])

    def engine_path(self, graph: str) -> Path:
        return contained_file(self.folder, self.engines[graph]["file"], self.rebuild_hint())

    def rebuild_hint(self) -> str:
        cmd = rebuild_command(self.export_folder, self.precision, self.folder, self.max_batch)
        return f"rebuild on this machine: `{cmd}`"


def engine_entry(plan: GraphPlan, plan_sha256: str) -> dict[str, Any]:
    return {
        "file": plan.engine_file,
        "sha256": plan_sha256,
        "onnx_file": plan.onnx_file.name,
        "onnx_sha256": plan.onnx_sha256,
        "profile": profile_to_dict(plan.profile),
        "io": plan.spec.to_dict(),
        # trtexec's random inputs: fine for timing, not for values (see `dq-edge compare --save-inputs`)
        "trtexec": trtexec_command(plan.engine_file, {n: opt for n, (_, opt, _) in plan.profile.items()}),
    }


def make_manifest(
    source: ExportSource,
    options: BuildOptions,
    target: GpuTarget,
    typing: NetworkTyping,
    max_batch: int,
    engines: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "dq_edge_version": __version__,
        "target": target.to_dict(),
        "precision": options.precision,
        "max_batch": max_batch,
        "network": {"strongly_typed": typing.strongly_typed, "builder_flags": list(typing.builder_flags)},
        "build": {
            "workspace_gib": options.workspace_gib,
            "opt_level": options.opt_level,
            "timing_cache": str(options.timing_cache) if options.timing_cache else None,
        },
        "export": {"folder": str(Path(source.folder).resolve()), "manifest_sha256": source.manifest_sha256},
        "dims": source.dims.to_dict(),
        "layout": source.layout.to_dict() if source.layout is not None else None,
        "engines": engines,
    }


def reusable_engines(folder: Path, new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Entries of an existing manifest in `folder` that a partial (`--only`) build may keep.

    Kept only when they were built for the same target, precision, max batch and export and
    their plan files are intact; anything else would mix engines that do not belong together.
    """
    if not (Path(folder) / MANIFEST_NAME).is_file():
        return {}
    try:
        old = read_manifest(folder)
    except DQEdgeError:  # unreadable or invalid: nothing in it is worth keeping
        return {}
    same = all(old.raw.get(k) == new[k] for k in ("format", "format_version", "target", "precision", "max_batch", "export"))
    if not same:
        return {}
    kept = {}
    for g, e in old.engines.items():
        try:
            path = old.engine_path(g)
        except ArtifactMismatchError:
            continue
        if path.is_file() and sha256_file(path) == e["sha256"]:
            kept[g] = e
    return kept


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = Path(folder) / MANIFEST_NAME
    write_json(path, manifest)
    return path


def read_manifest(folder: str | Path) -> EngineManifest:
    """The engine folder's manifest, read once and validated (schema, token layout vs dims)."""
    doc = read_artifact(folder, (ENGINE_KIND,), ENGINE_REBUILD_HINT)
    return EngineManifest(doc.folder, doc.raw, doc.sha256)


def check_target(manifest: EngineManifest, current: GpuTarget) -> list[str]:
    """Refuse engines built for another TensorRT version or compute capability.

    Returns warnings for differences that TensorRT tolerates (same SM, different board name).
    A different TensorRT version, even a patch release, is refused.
    """
    built = manifest.target
    # TensorRT deserialises only plans of its own exact build version unless they were built
    # VERSION_COMPATIBLE (NvInferRuntime.h, IRuntime::deserializeCudaEngine); dq-edge builds
    # version-specific plans, so a patch-level difference is refused here, with the rebuild
    # command, instead of failing later as "could not deserialize".
    if built.tensorrt_version != current.tensorrt_version:
        raise ArtifactMismatchError(
            f"engines in {manifest.folder} were built with TensorRT {built.tensorrt_version}, "
            f"this machine has TensorRT {current.tensorrt_version}",
            manifest.rebuild_hint(),
        )
    if built.compute_capability != current.compute_capability:
        raise ArtifactMismatchError(
            f"engines in {manifest.folder} were built for {built.gpu_name} ({built.sm_tag}), "
            f"this GPU is {current.gpu_name} ({current.sm_tag})",
            manifest.rebuild_hint(),
        )
    warnings = []
    if built.gpu_name != current.gpu_name:
        warnings.append(f"engines built on {built.gpu_name}, running on {current.gpu_name} (same {current.sm_tag})")
    return warnings


def verify_engine_files(manifest: EngineManifest, graphs: tuple[str, ...] | list[str]) -> None:
    """Every needed plan file exists and still has the sha256 recorded at build time."""
    engines = manifest.engines
    absent = [g for g in graphs if g not in engines]
    if absent:
        raise ArtifactMismatchError(
            f"{manifest.folder} has no engine for {', '.join(absent)}",
            manifest.rebuild_hint() + f" (or add them with `--only {','.join(absent)}`)",
        )
    for g in graphs:
        path = manifest.engine_path(g)
        if not path.is_file():
            raise ArtifactMismatchError(f"engine file {path} is missing", manifest.rebuild_hint())
        if sha256_file(path) != engines[g]["sha256"]:
            raise ArtifactMismatchError(f"engine file {path} changed since it was built (sha256)", manifest.rebuild_hint())


def check_export_match(manifest: EngineManifest, source: ExportSource) -> None:
    """The engines were built from exactly these ONNX files (used by `compare`)."""
    if manifest.precision != source.precision:
        raise ArtifactMismatchError(
            f"engines in {manifest.folder} are {manifest.precision}, the export side is {source.precision}",
            f"pass --precision {manifest.precision}",
        )
    stale = [g for g, e in manifest.engines.items() if g in source.onnx_sha256 and source.onnx_sha256[g] != e["onnx_sha256"]]
    if stale:
        cmd = rebuild_command(source.folder, manifest.precision, manifest.folder, manifest.max_batch)
        raise ArtifactMismatchError(
            f"engines for {', '.join(stale)} were built from other ONNX files than those in {source.folder}",
            f"rebuild: `{cmd}`",
        )
