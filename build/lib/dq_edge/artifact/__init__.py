"""The one torch-free place that reads and validates the files a user hands us as artifacts.

- `reader`: bounded JSON reading (size, UTF-8, depth, duplicates) + kind / version / schema.
- `schemas` (+ `schema_parts`): pydantic schemas of export manifests, engine manifests and
  model configs, with bounds on every size and cross-checks (token layout vs vocab sizes).
- `export`: an export folder verified once (files inside the folder, sha256 once each).
- `graph_check`: a loaded graph's real output sizes against its manifest.
The model folder's weights header (safetensors) is checked on the torch side, in
`dq_edge.models.folder`, before any module is built.
"""

from __future__ import annotations

from dq_edge.artifact.kinds import ENGINE_KIND, EXPORT_KIND, MODEL_KIND
from dq_edge.artifact.reader import ArtifactDoc, ArtifactKind, contained_file, read_artifact, read_artifact_json

__all__ = [
    "ArtifactDoc",
    "ArtifactKind",
    "ENGINE_KIND",
    "EXPORT_KIND",
    "MODEL_KIND",
    "contained_file",
    "read_artifact",
    "read_artifact_json",
]
