"""Backend selection: what `auto` picks and why, engine folders without TensorRT, explicit
requests that cannot run, the shipped-model cache (without a shipped model)."""

from __future__ import annotations

import pytest

import export_helpers
from dq_edge.errors import BackendUnavailableError, ConfigError, UsageError
from dq_edge.runtime.session import folder_kind, open_runtime


def _engine_folder(tmp_path):
    from dq_edge.engines.plan import export_source
    from engines_fakes import fake_engine_folder

    return fake_engine_folder(tmp_path / "engines", export_source(export_helpers.tiny_export(), "fp32"))


def test_auto_on_export_folder_picks_ort_cpu_and_says_why():
    opened = open_runtime(export_helpers.tiny_export(), "auto", threads=1)
    assert opened.backend.name == "ort-cpu" and opened.precision == "fp32" and opened.kind == "export"
    assert opened.reason.startswith("auto: ort-cpu")
    skipped = " | ".join(opened.skipped)
    assert skipped.startswith("trt: an ONNX export folder")
    assert "ort-trt: ONNX Runtime here has no TensorrtExecutionProvider" in skipped
    assert "ort-cuda: ONNX Runtime here has no CUDAExecutionProvider" in skipped


def test_precision_choice():
    assert open_runtime(export_helpers.tiny_export(), "ort-cpu", "int8", threads=1).backend.precision == "int8"
    with pytest.raises(UsageError, match="unknown precision"):
        open_runtime(export_helpers.tiny_export(), "ort-cpu", "fp8")
    with pytest.raises(UsageError, match="unknown backend"):
        open_runtime(export_helpers.tiny_export(), "onnx")


def test_engine_folder_without_tensorrt(tmp_path):
    engines = _engine_folder(tmp_path)
    assert folder_kind(engines) == "engine" and folder_kind(export_helpers.tiny_export()) == "export"
    # auto: native TensorRT is unavailable here -> the engine folder's own export on ORT
    opened = open_runtime(engines, "auto", threads=1)
    assert opened.backend.name == "ort-cpu" and opened.folder == export_helpers.tiny_export()
    assert opened.skipped[0].startswith("trt: the TensorRT backend cannot run here")
    assert "fell back to its export" in opened.reason
    with pytest.raises(BackendUnavailableError, match="TensorRT") as info:
        open_runtime(engines, "trt")
    assert "ort-cpu" in info.value.one_line()
    with pytest.raises(UsageError, match="engine folder") as info:
        open_runtime(engines, "ort-cpu")
    assert str(export_helpers.tiny_export()) in info.value.one_line()
    with pytest.raises(UsageError, match="--cuda-graph"):
        open_runtime(export_helpers.tiny_export(), "ort-cpu", cuda_graph=True)


def test_model_folders_exported_once_into_the_cache(monkeypatch, tmp_path, capsys):
    """The shipped model and `--engine MODEL_FOLDER` share the cache: exported once, reused,
    exported again only when the cached copy is damaged."""
    from dq_edge.cli import first_use_export
    from dq_edge.cli.main import main
    from dq_edge.runtime import default_model

    monkeypatch.setattr(default_model, "SHIPPED_MODEL", tmp_path / "nothing")
    with pytest.raises(ConfigError, match="no shipped model") as info:
        first_use_export.ensure_default_export("fp32")
    assert "--engine" in info.value.one_line()

    model = export_helpers.tiny_model_folder()
    monkeypatch.setenv("DQ_EDGE_CACHE", str(tmp_path / "cache"))

    def run_cli(out: str) -> str:
        code = main(["run", "--engine", str(model), "--backend", "ort-cpu", "--num", "2", "--threads", "1", "--out", str(tmp_path / out)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return captured.err

    assert "exported " in run_cli("o1")
    monkeypatch.setattr(default_model, "SHIPPED_MODEL", model)
    folder, exported = first_use_export.ensure_default_export("fp32")
    assert not exported and folder.parent.parent == tmp_path / "cache" and (folder / "manifest.json").is_file()
    with open(folder / "decoder.fp32.onnx", "ab") as fh:  # a damaged cache is exported again
        fh.write(b"x")
    assert first_use_export.ensure_default_export("fp32") == (folder, True)
    assert first_use_export.cached_export_ok(folder, "fp32")
    assert "exported " not in run_cli("o2")


def test_trt_ep_options_carry_graph_profiles():
    from dq_edge.graph_io import graph_specs
    from dq_edge.runtime.ort_backend import provider_chain
    from runtime_fixtures import probe_dims

    dims, _ = probe_dims()
    spec = graph_specs(dims, "int8", 4)["transformer_prefill"]
    chain = provider_chain("trt", "int8", "/cache", 0, spec)
    name, options = chain[0]
    assert name == "TensorrtExecutionProvider" and [c if isinstance(c, str) else c[0] for c in chain[1:]] == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    L = dims.max_length
    assert options["trt_profile_min_shapes"] == "content:1x2,position:1x2,segment:1x2"
    assert options["trt_profile_max_shapes"] == f"content:4x{L},position:4x{L},segment:4x{L}"
    assert "trt_int8_enable" not in options and options["trt_engine_cache_path"] == "/cache"  # typed ONNX, no weak typing
    assert provider_chain("cpu", "fp32", None) == ["CPUExecutionProvider"]
