"""The three artifact kinds: which file, which format name and version, which schema."""

from __future__ import annotations

from dq_edge import EXPORT_FORMAT_VERSION, FORMAT_VERSION
from dq_edge.artifact.reader import ArtifactKind
from dq_edge.artifact.schemas import EngineManifestSchema, ExportManifestSchema, ModelConfigSchema

MANIFEST_NAME = "manifest.json"
CONFIG_NAME = "config.json"
ENGINE_FORMAT_VERSION = EXPORT_FORMAT_VERSION  # engines are built from the export's graphs

EXPORT_RERUN_HINT = "re-run `dq-edge export MODEL --out {folder}` (add --overwrite to replace it)"
ENGINE_REBUILD_HINT = "build one with this version's `dq-edge build-engine EXPORT_DIR --out DIR`"
MODEL_RECREATE_HINT = "pass a folder written by this version's `dq-edge train` or `dq-edge import-official`"

EXPORT_KIND = ArtifactKind(
    file_name=MANIFEST_NAME,
    format_name="dq-edge-export",
    format_version=EXPORT_FORMAT_VERSION,
    label="export",
    folder_noun="a dq-edge export folder",
    file_noun="a dq-edge export manifest",
    wrong_kind_hint="pass a folder written by `dq-edge export`",
    schema=ExportManifestSchema,
    rerun_hint=EXPORT_RERUN_HINT,
)

ENGINE_KIND = ArtifactKind(
    file_name=MANIFEST_NAME,
    format_name="dq-edge-engines",
    format_version=ENGINE_FORMAT_VERSION,
    label="engine",
    folder_noun="an engine folder",
    file_noun="a dq-edge engine manifest",
    wrong_kind_hint="pass the folder written by `dq-edge build-engine`",
    schema=EngineManifestSchema,
    rerun_hint=ENGINE_REBUILD_HINT,
)

MODEL_KIND = ArtifactKind(
    file_name=CONFIG_NAME,
    format_name="dq-edge-model",
    format_version=FORMAT_VERSION,
    label="model",
    folder_noun="a dq-edge model folder",
    file_noun="a dq-edge model config",
    wrong_kind_hint="pass a model folder, not an export or engine folder",
    schema=ModelConfigSchema,
    rerun_hint=MODEL_RECREATE_HINT,
)
