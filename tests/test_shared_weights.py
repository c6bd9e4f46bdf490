"""Shared weights: the graphs of one precision keep each common tensor once in weights.<p>.bin.

The rewritten graphs hold exactly the tensors and nodes they held before (loaded with their
external data), every common tensor is written once, the manifest lists and verifies the file,
and a damaged, missing or misdeclared weights file is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

import export_helpers
from dq_edge.artifact.export import load_export
from dq_edge.errors import ArtifactMismatchError, ConfigError

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")


def _initializers(path: Path) -> dict[str, bytes]:
    from onnx import numpy_helper

    model = onnx.load(str(path))  # with its external data
    return {t.name: numpy_helper.to_array(t).tobytes() for t in model.graph.initializer}


@pytest.fixture(scope="module")
def plain_fp32(tmp_path_factory) -> Path:
    """The tiny model's fp32 graphs as the exporter writes them (before sharing)."""
    from dq_edge.export.build import export_fp32
    from dq_edge.export.graphs import load_models

    folder = tmp_path_factory.mktemp("plain")
    req = SimpleNamespace(precisions=["fp32"], max_batch=export_helpers.MAX_BATCH, opset=17, exporter="legacy")
    export_fp32(load_models(export_helpers.tiny_model_folder()), req, folder, lambda _m: None)
    return folder


def test_shared_graphs_hold_the_same_tensors_and_nodes(plain_fp32, tmp_path):
    from dq_edge.export.manifest import graph_file_name
    from dq_edge.export.shared_weights import MIN_SHARED_BYTES, share_export_weights

    folder = tmp_path / "shared"
    shutil.copytree(plain_fp32, folder)
    graphs = {p.name.split(".")[0]: {} for p in plain_fp32.glob("*.fp32.onnx")}
    result = share_export_weights(folder, {"fp32": graphs}, graph_file_name)["fp32"]

    assert "transformer_prefill" in result.graphs and "transformer_position_step" in result.graphs
    bin_size = (folder / result.file).stat().st_size
    before = sum(p.stat().st_size for p in plain_fp32.glob("*.onnx"))
    after = sum(p.stat().st_size for p in folder.glob("*.onnx")) + bin_size
    assert result.bytes_saved > 0
    loaded = {g: onnx.load(str(folder / graph_file_name(g, "fp32")), load_external_data=False) for g in graphs}
    users: dict[int, set[str]] = {}  # offset in the weights file -> graphs pointing at it
    inline: dict[str, list[bytes]] = {g: [] for g in graphs}
    for graph, model in loaded.items():
        name = graph_file_name(graph, "fp32")
        onnx.checker.check_model(str(folder / name), full_check=True)
        assert _initializers(folder / name) == _initializers(plain_fp32 / name)
        plain = onnx.load(str(plain_fp32 / name))
        assert [n.SerializeToString() for n in model.graph.node] == [n.SerializeToString() for n in plain.graph.node]
        for t in model.graph.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                entry = {e.key: e.value for e in t.external_data}
                assert entry["location"] == result.file
                users.setdefault(int(entry["offset"]), set()).add(graph)
            elif len(t.raw_data) >= MIN_SHARED_BYTES:
                inline[graph].append(t.raw_data)
    for graph, kept in inline.items():  # a large tensor stays inside a graph only when no other graph has it
        others = {b for g, k in inline.items() if g != graph for b in k}
        assert not others.intersection(kept), graph
    assert len(users) == result.tensors  # one region of the file per distinct tensor
    references = sum(len(g) for g in users.values())
    # saved what it says, less the alignment padding and ~100 bytes of external_data fields per reference
    assert after <= before - result.bytes_saved + 64 * result.tensors + 100 * references
    assert any(len(g) > 1 for g in users.values())


def test_nothing_in_common_changes_nothing(plain_fp32, tmp_path):
    from dq_edge.export.shared_weights import share_weights

    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(plain_fp32 / "decoder.fp32.onnx", folder)
    before = (folder / "decoder.fp32.onnx").read_bytes()
    assert share_weights(folder, {"decoder": folder / "decoder.fp32.onnx"}, "fp32") is None
    assert (folder / "decoder.fp32.onnx").read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["decoder.fp32.onnx"]


def test_the_export_lists_and_verifies_its_weights_file(tmp_path):
    export = export_helpers.tiny_export()
    manifest = json.loads((export / "manifest.json").read_text())
    for precision in ("fp32", "fp16"):
        entry = manifest["precisions"][precision]["weights"]
        assert entry["file"] == f"weights.{precision}.bin" and (export / entry["file"]).is_file()
        assert set(entry["graphs"]) <= set(manifest["precisions"][precision]["graphs"])
        info = load_export(export, precision)
        assert set(info.files) == set(manifest["precisions"][precision]["graphs"])

    damaged = tmp_path / "damaged"
    shutil.copytree(export, damaged)
    with open(damaged / "weights.fp32.bin", "r+b") as fh:  # same size, one byte flipped
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 1]))
    with pytest.raises(ArtifactMismatchError, match="sha256"):
        load_export(damaged, "fp32")
    (damaged / "weights.fp32.bin").unlink()
    with pytest.raises(ArtifactMismatchError, match="missing") as info:
        load_export(damaged, "fp32")
    assert "dq-edge export" in info.value.one_line()


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda w: w.update(graphs=["encoder", "nonsense"]), "graphs"),
        (lambda w: w.update(file="../weights.fp32.bin"), "file"),
        (lambda w: w.update(file="decoder.fp32.onnx"), "graph file"),
        (lambda w: w.update(sha256="abc"), "sha256"),
    ],
    ids=["unknown-graph", "outside", "a-graph-file", "bad-hash"],
)
def test_a_misdeclared_weights_entry_is_refused(tmp_path, edit, needle):
    folder = tmp_path / "export"
    shutil.copytree(export_helpers.tiny_export(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest["precisions"]["fp32"]["weights"])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=needle):
        load_export(folder, "fp32")
