"""The shared artifact reader: each folder kind refuses the others and stale versions alike."""

import json

import pytest

from dq_edge.artifact import read_artifact_json
from dq_edge.engines.manifest import ENGINE_KIND
from dq_edge.errors import ArtifactMismatchError, ConfigError
from dq_edge.export.manifest import EXPORT_KIND
from dq_edge.models.folder import MODEL_KIND

KINDS = [MODEL_KIND, EXPORT_KIND, ENGINE_KIND]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_missing_bad_json_wrong_kind_and_version(tmp_path, kind):
    with pytest.raises(ConfigError, match="no " + kind.file_name):
        read_artifact_json(tmp_path, kind, "rerun X")
    path = tmp_path / kind.file_name
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_artifact_json(tmp_path, kind, "rerun X")
    for other in KINDS:
        if other.format_name != kind.format_name:
            path.write_text(json.dumps({"format": other.format_name, "format_version": 1}))
            with pytest.raises(ConfigError, match="is not " + kind.file_noun):
                read_artifact_json(tmp_path, kind, "rerun X")
    path.write_text(json.dumps({"format": kind.format_name, "format_version": 99}))
    with pytest.raises(ArtifactMismatchError, match=f"{kind.label} format version 99") as info:
        read_artifact_json(tmp_path, kind, "rerun X")
    assert info.value.hint == kind.rerun_hint.format(folder=tmp_path)  # the command that recreates this kind
    path.write_text(json.dumps({"format": kind.format_name, "format_version": kind.format_version, "k": 1}))
    with pytest.raises(ConfigError, match=f"not a valid {kind.label} file: .*k: Extra inputs are not permitted"):
        read_artifact_json(tmp_path, kind, "rerun X")
