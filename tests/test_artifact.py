"""The artifact reader: every kind refuses the others, stale versions, malformed bytes and
values outside the schema alike; graph files stay inside their folder; a run reads its
manifest once and hashes each graph once."""

import dataclasses
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from dq_edge.artifact import ENGINE_KIND, EXPORT_KIND, MODEL_KIND, contained_file, read_artifact_json
from dq_edge.artifact.export import load_export
from dq_edge.artifact.graph_check import check_graph_outputs
from dq_edge.artifact.json_file import json_depth, parse_json_bytes, read_json_bytes
from dq_edge.artifact.schema_parts import DimsSchema, LayoutSchema, layout_dims_disagreement
from dq_edge.artifact.schemas import TransformerSectionSchema, VaeSectionSchema
from dq_edge.errors import ArtifactMismatchError, ConfigError
from dq_edge.graph_io import GraphDims, GraphSpec, TensorSpec
from dq_edge.tokens import SEGMENT_FINE, TokenLayout

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
    with pytest.raises(ConfigError, match=f"not a valid {kind.label} file: .*Field required") as info:
        read_artifact_json(tmp_path, kind, "rerun X")
    assert "more)" in info.value.message  # several problems: the first is named, the rest counted


# ----------------------------------------------------------------------------- bounded JSON
def test_json_size_is_checked_before_reading(tmp_path):
    path = tmp_path / "m.json"
    path.write_bytes(b"[" + b" " * 100 + b"]")
    assert read_json_bytes(path, "h", max_bytes=102) == path.read_bytes()
    with pytest.raises(ConfigError, match="is 102 bytes, more than the 101"):
        read_json_bytes(path, "h", max_bytes=101)


@pytest.mark.parametrize(
    "data, message",
    [
        (b'{"a": "\xff"}', "is not UTF-8 text \\(invalid byte at offset 7\\)"),
        (b"[" * 17 + b"]" * 17, "nests 17 levels deep, more than the 16"),
        (b'{"a": 1, "a": 2}', "key 'a' appears twice"),
        (b'{"a": Infinity}', "Infinity is not a JSON number"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": [1, 2}', "is not valid JSON"),
    ],
)
def test_json_bytes_refused_with_the_reason(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_json_bytes(data, Path("m.json"), "rerun it")
    assert info.value.hint == "rerun it"


def test_depth_counts_brackets_outside_strings_only():
    assert json_depth('{"a": "[[[[{{{{", "b": ["\\"[["]}') == 2
    assert parse_json_bytes(b'{"a": "' + b"[" * 100 + b'"}', Path("m.json"), "h") == {"a": "[" * 100}
    assert json_depth("[" * 16 + "]" * 16) == 16


# ----------------------------------------------------------------------------- schemas
def test_schemas_mirror_the_dataclasses_they_build():
    """The schema names every field of the config it validates: a field added to the dataclass
    without a bound (or the reverse) fails here, not at a user's machine."""
    from dq_edge.models.transformer_config import TransformerConfig
    from dq_edge.models.vae_config import PRESETS, VAEConfig

    assert set(VaeSectionSchema.model_fields) == {f.name for f in dataclasses.fields(VAEConfig)} | {"coarse_hw", "fine_hw"}
    assert set(LayoutSchema.model_fields) == {f.name for f in dataclasses.fields(TokenLayout)}
    assert set(DimsSchema.model_fields) == {f.name for f in dataclasses.fields(GraphDims)}
    section = json.loads(json.dumps(TransformerConfig.from_preset("tiny", TokenLayout(64, (4, 4), (8, 8))).to_dict()))
    assert set(section) <= set(TransformerSectionSchema.model_fields)
    assert TransformerSectionSchema.model_validate(section).tokens.to_layout() == TokenLayout(64, (4, 4), (8, 8))
    for preset in PRESETS.values():  # every shipped preset is inside the bounds
        assert VaeSectionSchema.model_validate(preset.to_dict()).image_size == preset.image_size


@pytest.mark.parametrize("n_classes, null_class", [(0, False), (10, True), (1000, False)])
def test_layout_agrees_with_dims_built_from_it_and_not_with_fewer_codes(n_classes, null_class):
    layout = TokenLayout(n_codes=64, coarse_hw=(4, 4), fine_hw=(8, 8), n_classes=n_classes, null_class=null_class)
    dims = GraphDims(
        image_size=16, z_channels=8, coarse_hw=(4, 4), fine_hw=(8, 8), router="feature", width=8, heads=2,
        position_layers=1, content_layers=1, max_length=layout.max_length, content_vocab=layout.content_vocab,
        position_vocab=layout.position_vocab(SEGMENT_FINE),
    )
    assert layout_dims_disagreement(layout, dims) is None
    fewer = dataclasses.replace(layout, n_codes=63)
    assert "content_vocab" in layout_dims_disagreement(fewer, dims)
    other_grid = dataclasses.replace(layout, coarse_hw=(2, 2), fine_hw=(4, 4))
    assert "coarse_hw" in layout_dims_disagreement(other_grid, dims)


def _probe_manifest(tmp_path: Path) -> Path:
    from engines_fakes import probe_export

    return probe_export(tmp_path / "export")


def _edit(path: Path, keys: str, value) -> None:
    data = json.loads(path.read_text())
    node = data
    *parents, last = keys.split(".")
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "keys, value, message",
    [
        ("max_batch", True, "max_batch: Input should be a valid integer"),
        ("max_batch", 0, "max_batch: Input should be greater than or equal to 1"),
        ("dims.heads", 3, "width 8 is not divisible by heads 3"),
        ("dims.router", "magic", "dims.router: Input should be 'feature' or 'entropy'"),
        ("tokens.coarse_hw", [2, 2, 2], "tokens.coarse_hw: List should have at most 2 items"),
        ("tokens.n_classes", -1, "tokens.n_classes: Input should be greater than or equal to 0"),
        ("tokens.n_codes", 7, "the token layout needs content_vocab=10, the graphs have 11"),
        ("max_length", 999, "max_length 999 differs from dims.max_length"),
        ("opset", KeyError, "opset: Field required"),
        ("precisions.fp32.graphs.transformer_prefill", {}, "transformer_prefill.file: Field required"),
        ("precisions.fp32.graphs.transformer_position_step.file", "..", "'..' is not a plain file name"),
        ("precisions.fp32.graphs.transformer_position_step.file", "a\\b.onnx", "is not a plain file name"),
        ("precisions.fp16", {"graphs": {}}, "precisions.fp16.graphs: Dictionary should have at least 1 item"),
        ("precisions.fp64", {"graphs": {}}, "precisions.fp64.\\[key\\]: Input should be 'fp32', 'fp16', 'int8'"),
        ("source.model_hash", "A" * 64, "source.model_hash: String should match pattern"),
    ],
)
def test_export_manifest_schema(tmp_path, keys, value, message):
    folder = _probe_manifest(tmp_path)
    _edit(folder / "manifest.json", keys, value)
    with pytest.raises(ConfigError, match=message) as info:
        load_export(folder, "fp32")
    assert f"dq-edge export MODEL --out {folder}" in info.value.hint


def test_export_graph_spec_must_describe_its_own_graph(tmp_path):
    folder = _probe_manifest(tmp_path)
    data = json.loads((folder / "manifest.json").read_text())
    graphs = data["precisions"]["fp32"]["graphs"]
    graphs["transformer_position_step"]["spec"]["name"] = "transformer_content_step"
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="graphs.transformer_position_step describes graph 'transformer_content_step'"):
        load_export(folder, "fp32")


# ----------------------------------------------------------------------------- files inside the folder
def test_contained_file_refuses_what_leaves_the_folder(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (tmp_path / "outside.onnx").write_bytes(b"x")
    (folder / "inside.onnx").write_bytes(b"y")
    assert contained_file(folder, "inside.onnx", "h") == folder / "inside.onnx"
    (folder / "alias.onnx").symlink_to(folder / "inside.onnx")  # a link that stays inside is fine
    assert contained_file(folder, "alias.onnx", "h") == folder / "alias.onnx"
    (folder / "escape.onnx").symlink_to(tmp_path / "outside.onnx")
    for name in ("../outside.onnx", str(tmp_path / "outside.onnx"), "escape.onnx", "."):
        with pytest.raises(ArtifactMismatchError, match="outside"):
            contained_file(folder, name, "h")


def test_symlinked_graph_outside_the_export_is_refused_even_with_the_right_sha(tmp_path):
    folder = _probe_manifest(tmp_path)
    name = "transformer_position_step.fp32.onnx"
    shutil.move(str(folder / name), tmp_path / name)
    os.symlink(tmp_path / name, folder / name)
    with pytest.raises(ArtifactMismatchError, match="points outside"):
        load_export(folder, "fp32")


# ----------------------------------------------------------------------------- graphs vs manifest
def _node(name, shape):
    return SimpleNamespace(name=name, shape=shape)


def test_graph_outputs_must_have_the_manifest_sizes():
    spec = GraphSpec("g", (), (TensorSpec("logits", "float32", ("batch", 67)), TensorSpec("hidden", "float32", ("batch", 8))))
    check_graph_outputs("g.onnx", [_node("logits", ["batch", 67]), _node("hidden", [None, 8])], spec, "h")
    cases = [
        ([_node("logits", ["batch", 35]), _node("hidden", ["batch", 8])], "logits has size 35 on axis 1, its manifest says 67"),
        ([_node("logits", ["batch", 67, 1]), _node("hidden", ["batch", 8])], "logits has rank 3"),
        ([_node("logits", ["batch", 67])], "has no output 'hidden'"),
    ]
    for outputs, message in cases:
        with pytest.raises(ArtifactMismatchError, match=message):
            check_graph_outputs("g.onnx", outputs, spec, "h")


# ----------------------------------------------------------------------------- one read, one hash
def test_run_reads_the_manifest_once_and_hashes_each_graph_once(tmp_path, monkeypatch):
    """`dq-edge run --engine EXPORT` with backend auto: every ORT provider tried reuses the one
    verified ExportInfo (before: one read per provider tried plus two more, a hash per provider)."""
    import export_helpers

    import dq_edge.artifact.export as artifact_export
    import dq_edge.artifact.reader as reader
    from dq_edge.cli.main import main

    export = tmp_path / "export"
    shutil.copytree(export_helpers.tiny_export(), export)
    reads: list[Path] = []
    hashes: list[Path] = []
    real_read, real_hash = reader.read_json_bytes, artifact_export.sha256_file
    monkeypatch.setattr(reader, "read_json_bytes", lambda path, *a, **k: reads.append(Path(path)) or real_read(path, *a, **k))
    monkeypatch.setattr(artifact_export, "sha256_file", lambda path, *a, **k: hashes.append(Path(path)) or real_hash(path, *a, **k))
    real_read_bytes, real_read_text = Path.read_bytes, Path.read_text
    manifest_reads = []

    def spy(real):
        def read(self, *a, **k):
            if self.name == "manifest.json":
                manifest_reads.append(self)
            return real(self, *a, **k)

        return read

    monkeypatch.setattr(Path, "read_bytes", spy(real_read_bytes))
    monkeypatch.setattr(Path, "read_text", spy(real_read_text))
    code = main(["run", "--engine", str(export), "--num", "1", "--threads", "1", "--out", str(tmp_path / "out")])
    assert code == 0
    assert reads == [export / "manifest.json"] and manifest_reads == []
    assert sorted(hashes) == sorted(set(hashes)) and len(hashes) == 7  # each of the 6 fp32 graphs once
    assert export / "weights.fp32.bin" in hashes  # and the weights they share, once
