"""Reading the JSON file that makes a folder a dq-edge artifact (model, export or engine folder).

One reader so the three artifact kinds fail the same way: missing file, oversized / non-UTF-8 /
deeply nested / invalid JSON, another artifact kind, another format version, a value of the
wrong type or size -> one typed error naming the file and the command to rerun. The file is
read once; its sha256 is taken from those same bytes. Torch-free.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dq_edge.artifact.json_file import parse_json_bytes, read_json_bytes
from dq_edge.artifact.schema_parts import Schema
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
    schema: type[Schema] | None = None  # None: only format and version are checked
    rerun_hint: str = ""  # "{folder}" template: what recreates a stale or invalid file of this kind


@dataclass(frozen=True)
class ArtifactDoc:
    """One artifact file, read once and validated: pass this down instead of re-reading."""

    folder: Path
    kind: ArtifactKind
    raw: dict[str, Any]  # the JSON as written (validated against kind.schema)
    parsed: Schema | None  # the schema object (typed values)
    sha256: str  # of the bytes that were parsed

    @property
    def path(self) -> Path:
        return self.folder / self.kind.file_name


def describe_validation_error(exc: ValidationError) -> str:
    """`dims.content_vocab: Input should be ...` for the first problem (+ how many more)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    message = first["msg"].removeprefix("Value error, ")  # our own checks' ValueError text
    return f"{where}: {message}{more}" if where else f"{message}{more}"


def read_artifact(folder: str | Path, kinds: tuple[ArtifactKind, ...], rerun_hint: str) -> ArtifactDoc:
    """The artifact file of `folder`, which must be one of `kinds` (all share one file name)."""
    folder = Path(folder)
    names = {k.file_name for k in kinds}
    if len(names) != 1:
        raise ValueError("artifact kinds read together must share their file name")
    path = folder / names.pop()
    if not path.is_file():
        noun = " or ".join(k.folder_noun for k in kinds)
        raise ConfigError(f"{folder} has no {path.name}: it is not {noun}", rerun_hint)
    data = read_json_bytes(path, rerun_hint)
    raw = parse_json_bytes(data, path, rerun_hint)
    fmt = raw.get("format") if isinstance(raw, dict) else None
    kind = next((k for k in kinds if k.format_name == fmt), None)
    if kind is None:
        raise ConfigError(f"{path} is not {' or '.join(k.file_noun for k in kinds)}", kinds[0].wrong_kind_hint)
    rerun_hint = kind.rerun_hint.format(folder=folder) if kind.rerun_hint else rerun_hint
    if raw.get("format_version") != kind.format_version:
        raise ArtifactMismatchError(
            f"{folder} has {kind.label} format version {raw.get('format_version')!r}, "
            f"this dq-edge reads {kind.format_version}",
            rerun_hint,
        )
    parsed = None
    if kind.schema is not None:
        try:
            parsed = kind.schema.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{path} is not a valid {kind.label} file: {describe_validation_error(exc)}", rerun_hint) from exc
    return ArtifactDoc(folder, kind, raw, parsed, hashlib.sha256(data).hexdigest())


def read_artifact_json(folder: str | Path, kind: ArtifactKind, rerun_hint: str) -> dict[str, Any]:
    """The parsed JSON of `folder/kind.file_name`, checked for kind, version and schema."""
    return read_artifact(folder, (kind,), rerun_hint).raw


def contained_file(folder: Path, name: str, hint: str) -> Path:
    """`folder/name`, refused when it leaves the folder (`..`, absolute, or a symlink pointing out).

    The schemas already refuse separators in file names; this also catches a file that is a
    symlink to somewhere else, so an artifact never makes dq-edge read files outside it."""
    path = folder / name
    base = folder.resolve()
    target = path.resolve()
    if Path(name).is_absolute() or target == base or not target.is_relative_to(base):
        raise ArtifactMismatchError(f"{path} points outside {folder}; an artifact's files must stay inside its folder", hint)
    return path
