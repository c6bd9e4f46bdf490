"""Reading the JSON file that makes a folder a dq-edge artifact (model, export or engine folder).

One reader so the three artifact kinds fail the same way: missing file, bad JSON, another
artifact kind, another format version -> one typed error with the command to rerun. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dq_edge.errors import ArtifactMismatchError, ConfigError


@dataclass(frozen=True)
class ArtifactKind:
    file_name: str  # e.g. "manifest.json"
    format_name: str  # value of the file's "format" key
    format_version: int
    label: str  # "model", "export", "engine": used in messages
    folder_noun: str  # e.g. "a dq-edge export folder"
    file_noun: str  # e.g. "a dq-edge export manifest"
    wrong_kind_hint: str  # what to pass instead


def read_artifact_json(folder: str | Path, kind: ArtifactKind, rerun_hint: str) -> dict[str, Any]:
    """The parsed JSON of `folder/kind.file_name`, checked for kind and format version."""
    folder = Path(folder)
    path = folder / kind.file_name
    if not path.is_file():
        raise ConfigError(f"{folder} is not {kind.folder_noun} (no {kind.file_name})", rerun_hint)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}", rerun_hint) from exc
    if not isinstance(raw, dict) or raw.get("format") != kind.format_name:
        raise ConfigError(f"{path} is not {kind.file_noun}", kind.wrong_kind_hint)
    if raw.get("format_version") != kind.format_version:
        raise ArtifactMismatchError(
            f"{folder} has {kind.label} format version {raw.get('format_version')}, "
            f"this dq-edge reads {kind.format_version}",
            rerun_hint,
        )
    return raw
