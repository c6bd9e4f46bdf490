"""Pure-Python engine planning: names, profiles from the IO specs, typing per TensorRT version,
the engine manifest and every way it refuses a mismatched or stale engine folder."""

from __future__ import annotations

import json

import pytest

from dq_edge.engines.manifest import (
    check_export_match,
    check_target,
    read_manifest,
    reusable_engines,
    verify_engine_files,
)
from dq_edge.engines.plan import (
    BuildOptions,
    GpuTarget,
    engine_file_name,
    export_source,
    make_plan,
    network_typing,
    parse_only,
    profile_for,
    rebuild_command,
)
from dq_edge.errors import ArtifactMismatchError, ConfigError, UsageError
from dq_edge.graph_io import GRAPH_NAMES, graph_specs
from engines_fakes import DIMS, TARGET, fake_engine_folder, fake_export, probe_export
from error_helpers import raises_line

POS = "transformer_position_step"


def test_engine_file_name_carries_tensorrt_version_and_sm():
    assert engine_file_name(POS, "fp16", TARGET) == "transformer_position_step.fp16.trt10.3.sm87.plan"
    rtx = GpuTarget("11.1.0.2", "NVIDIA GeForce RTX 3090", (8, 6))
    assert engine_file_name("decoder", "int8", rtx) == "decoder.int8.trt11.1.sm86.plan"


@pytest.mark.parametrize(
    "version,has_flag,precision,expected",
    [
        ("10.3.0.30", True, "fp16", (True, True, ())),  # JetPack 6: STRONGLY_TYPED creation flag
        ("11.0.0.5", True, "int8", (True, False, ())),  # TensorRT 11: always typed, flag ignored
        ("8.6.1", False, "fp16", (False, False, ("FP16",))),  # no typed networks: guarded fallback
        ("8.6.1", False, "int8", (False, False, ("FP16", "INT8"))),
        ("8.6.1", False, "fp32", (False, False, ())),
    ],
)
def test_network_typing_per_tensorrt_version(version, has_flag, precision, expected):
    t = network_typing(version, has_flag, precision)
    assert (t.strongly_typed, t.creation_flag, t.builder_flags) == expected


def test_profiles_come_from_the_specs():
    specs = graph_specs(DIMS, "fp16", 8)
    L, H, D = DIMS.max_length, DIMS.heads, DIMS.head_dim
    step = profile_for(specs[POS])
    assert step["step"] == ((1,), (8,), (8,))  # one step per row
    assert step["past_key.0"] == ((1, H, 1, D), (8, H, L, D), (8, H, L, D))  # batch and cache rows (buckets) range
    assert step["content"] == ((1,), (8,), (8,))
    prefill = profile_for(specs["transformer_prefill"])
    assert prefill["content"] == ((1, 2), (8, min(L, 64)), (8, L))
    assert profile_for(specs["encoder"])["image"][2] == (8, 3, DIMS.image_size, DIMS.image_size)


def test_parse_only():
    assert parse_only(None) == () and parse_only("") == ()
    assert parse_only("decoder, encoder,decoder") == ("decoder", "encoder")
    with raises_line(UsageError, "unknown graph nope.*graphs: encoder"):
        parse_only("decoder,nope")


def test_build_options_validation():
    with raises_line(UsageError, "opt-level 6.*0..5"):
        BuildOptions(opt_level=6)
    with raises_line(UsageError, "workspace"):
        BuildOptions(workspace_gib=0)
    with raises_line(UsageError, "unknown precision"):
        BuildOptions(precision="bf16")
    assert BuildOptions(workspace_gib=1.5).workspace_bytes == 3 << 29


def test_make_plan(tmp_path):
    export = fake_export(tmp_path / "export", "fp16", max_batch=4, graphs=("encoder", "decoder", POS))
    plans = make_plan(export, BuildOptions("fp16", max_batch=2), TARGET)
    assert [p.name for p in plans] == ["encoder", "decoder", POS]  # GRAPH_NAMES order
    assert plans[0].profile["image"][2][0] == 2
    assert [p.name for p in make_plan(export, BuildOptions("fp16", only=("decoder",)), TARGET)] == ["decoder"]
    with raises_line(UsageError, "exceeds the export's max batch 4.*dq-edge export"):
        make_plan(export, BuildOptions("fp16", max_batch=5), TARGET)
    with raises_line(UsageError, "no fp16 graph dgc.*it has: encoder, decoder"):
        make_plan(export, BuildOptions("fp16", only=("dgc",)), TARGET)


def test_manifest_round_trip(tmp_path):
    export = fake_export(tmp_path / "export", "fp16")
    folder = fake_engine_folder(tmp_path / "engines", export)
    m = read_manifest(folder)
    assert (m.precision, m.max_batch, m.dims, m.layout, m.target) == ("fp16", 4, DIMS, export.layout, TARGET)
    assert set(m.engines) == set(GRAPH_NAMES)
    entry = m.engines[POS]
    assert entry["profile"]["past_key.0"]["max"] == [4, DIMS.heads, DIMS.max_length, DIMS.head_dim]
    assert entry["io"] == graph_specs(DIMS, "fp16", 4)[POS].to_dict()
    assert entry["onnx_sha256"] == export.onnx_sha256[POS]
    assert entry["trtexec"].startswith(f"trtexec --loadEngine={entry['file']} --useCudaGraph")
    assert f"past_key.0:4x{DIMS.heads}x{DIMS.max_length}x{DIMS.head_dim}" in entry["trtexec"]
    assert check_target(m, TARGET) == []
    verify_engine_files(m, GRAPH_NAMES)
    assert m.rebuild_hint() == f"rebuild on this machine: `{rebuild_command(m.export_folder, 'fp16', folder, 4)}`"


@pytest.mark.parametrize(
    "current,pattern",
    [
        (GpuTarget("10.4.0.1", "Orin", (8, 7)), "built with TensorRT 10.3.0.30, this machine has TensorRT 10.4.0.1.*dq-edge build-engine .* --fp16"),
        (GpuTarget("10.3.0.30", "NVIDIA GeForce RTX 3090", (8, 6)), r"built for Orin \(sm87\), this GPU is NVIDIA GeForce RTX 3090 \(sm86\).*--out"),
    ],
)
def test_check_target_refuses_mismatches(tmp_path, current, pattern):
    folder = fake_engine_folder(tmp_path / "engines", fake_export(tmp_path / "export", "fp16"))
    with raises_line(ArtifactMismatchError, pattern):
        check_target(read_manifest(folder), current)


def test_board_name_only_warns_and_a_patch_release_is_refused(tmp_path):
    folder = fake_engine_folder(tmp_path / "engines", fake_export(tmp_path / "export"))
    warnings = check_target(read_manifest(folder), GpuTarget("10.3.0.30", "Orin NX", (8, 7)))
    assert len(warnings) == 1 and "Orin NX" in warnings[0]
    with pytest.raises(ArtifactMismatchError, match="10.3.0.26") as info:
        check_target(read_manifest(folder), GpuTarget("10.3.0.26", "Orin", (8, 7)))
    assert "dq-edge build-engine" in info.value.hint


def test_broken_or_foreign_manifests(tmp_path):
    with raises_line(ConfigError, "not an engine folder.*dq-edge build-engine"):
        read_manifest(tmp_path)
    folder = fake_engine_folder(tmp_path / "engines", fake_export(tmp_path / "export"))
    path = folder / "manifest.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "format_version": 99}))
    with raises_line(ArtifactMismatchError, "engine format version 99"):
        read_manifest(folder)
    path.write_text(json.dumps({**raw, "format": "dq-edge-export"}))
    with raises_line(ConfigError, "not a dq-edge engine manifest"):
        read_manifest(folder)
    path.write_text("{")
    with raises_line(ConfigError, "not valid JSON"):
        read_manifest(folder)


def test_missing_engines_and_files(tmp_path):
    export = fake_export(tmp_path / "export", graphs=("encoder", "dgc", "decoder"))
    folder = fake_engine_folder(tmp_path / "engines", export)
    m = read_manifest(folder)
    with raises_line(ArtifactMismatchError, "no engine for transformer_position_step.*--only transformer_position_step"):
        verify_engine_files(m, ["encoder", POS])
    m.engine_path("dgc").unlink()
    with raises_line(ArtifactMismatchError, "is missing.*dq-edge build-engine"):
        verify_engine_files(m, ["dgc"])


def test_stale_engines_against_a_new_export(tmp_path):
    export = fake_export(tmp_path / "export")
    m = read_manifest(fake_engine_folder(tmp_path / "engines", export))
    check_export_match(m, export)
    changed = fake_export(tmp_path / "export2")
    changed.onnx_sha256[POS] = "f" * 64
    with raises_line(ArtifactMismatchError, "engines for transformer_position_step were built from other ONNX files.*dq-edge build-engine"):
        check_export_match(m, changed)
    with raises_line(ArtifactMismatchError, "are fp32, the export side is fp16.*--precision fp32"):
        check_export_match(m, fake_export(tmp_path / "export3", "fp16"))


def test_reusable_engines_only_from_the_same_build_target(tmp_path):
    export = fake_export(tmp_path / "export")
    folder = fake_engine_folder(tmp_path / "engines", export)
    raw = read_manifest(folder).raw
    assert set(reusable_engines(folder, raw)) == set(GRAPH_NAMES)
    assert reusable_engines(folder, {**raw, "max_batch": 8}) == {}
    assert reusable_engines(folder, {**raw, "target": GpuTarget("10.3.0.30", "x", (8, 6)).to_dict()}) == {}
    read_manifest(folder).engine_path("decoder").write_bytes(b"changed")
    assert "decoder" not in reusable_engines(folder, raw)


def test_export_source_verifies_the_export(tmp_path):
    folder = probe_export(tmp_path / "export")
    source = export_source(folder, "fp32")
    assert set(source.onnx_files) == {POS, "transformer_content_step"} and source.max_batch == 4
    assert len(source.manifest_sha256) == 64
    with raises_line(ArtifactMismatchError, "no fp16 graphs"):
        export_source(folder, "fp16")
    source.onnx_files[POS].write_bytes(b"edited")
    with raises_line(ArtifactMismatchError, "sha256.*dq-edge export"):
        export_source(folder, "fp32")
