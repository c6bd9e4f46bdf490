"""`dq-edge export`: idempotency, refusal without --force, bad input, atomicity, manifest."""

from __future__ import annotations

import json
import shutil

import pytest

from export_helpers import calib_folder, tiny_export, tiny_model_folder, workdir

from dq_edge.cli.main import main
from dq_edge.errors import ArtifactMismatchError, UsageError
from dq_edge.export.manifest import MANIFEST_NAME, load_export, parse_precisions


def _export(out, *extra):
    return main(["export", str(tiny_model_folder()), "--out", str(out), "--max-batch", "2", *extra])


@pytest.fixture(scope="module")
def fp32_export():
    out = workdir() / "cli-fp32"
    assert _export(out) == 0
    return out


def test_export_then_again_is_up_to_date(fp32_export, capsys):
    before = (fp32_export / MANIFEST_NAME).read_bytes()
    mtimes = {p.name: p.stat().st_mtime_ns for p in fp32_export.iterdir()}
    assert _export(fp32_export) == 0
    assert "up to date" in capsys.readouterr().out
    assert (fp32_export / MANIFEST_NAME).read_bytes() == before
    assert {p.name: p.stat().st_mtime_ns for p in fp32_export.iterdir()} == mtimes


def test_different_export_is_refused_and_force_re_exports_identically(fp32_export, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(fp32_export, out)
    assert _export(out, "--max-batch", "3") == 1
    err = capsys.readouterr().err
    assert "different" in err and "--overwrite" in err
    assert json.loads((out / MANIFEST_NAME).read_text())["max_batch"] == 2  # untouched
    (out / "decoder.fp32.onnx").unlink()
    assert _export(out) == 1  # a damaged copy of the same export is not "up to date" either
    assert _export(out, "--force") == 0
    assert "exported" in capsys.readouterr().out
    # the export is deterministic: the same manifest (sha256 of every file included)
    assert (out / MANIFEST_NAME).read_text() == (fp32_export / MANIFEST_NAME).read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_folder_that_is_not_an_export_is_never_replaced(tmp_path, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.png").write_bytes(b"x")
    assert _export(out) == 2
    assert "holds no dq-edge export" in capsys.readouterr().err
    assert _export(out, "--overwrite") == 2
    assert "is not a folder dq-edge wrote" in capsys.readouterr().err
    assert (out / "holiday.png").read_bytes() == b"x"


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["--precision", "fp8"], 2, "unknown precision fp8"),
        (["--precision", "int8"], 2, "int8 needs calibration data"),
        (["--precision", "int8", "--calib-images", "/nonexistent/calib"], 2, "does not exist"),
        (["--max-batch", "0"], 2, "--max-batch"),
        (["--opset", "13"], 1, "opset 13"),
    ],
)
def test_bad_options(tmp_path, capsys, args, code, text):
    out = tmp_path / "out"
    assert _export(out, *args) == code
    err = capsys.readouterr().err
    assert text in err and "hint:" in err and "Traceback" not in err
    assert not out.exists()


def test_model_folder_of_another_format_version(tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_folder(), model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["format_version"] = 99
    (model / "config.json").write_text(json.dumps(cfg))
    assert main(["export", str(model), "--out", str(tmp_path / "out")]) == 1
    assert "format version 99" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2


def test_interrupted_or_failed_export_leaves_nothing_under_the_final_name(tmp_path, monkeypatch, capsys):
    import dq_edge.export.build as build
    from dq_edge.errors import DQEdgeError
    from dq_edge.export.pipeline import ExportRequest, export_model

    real = build.export_graph

    def stop_at_dgc(exc):
        def export_graph(module, spec, *args, **kwargs):
            if spec.name == "dgc":  # the encoder file is already written in the temp folder
                raise exc
            return real(module, spec, *args, **kwargs)

        return export_graph

    out = tmp_path / "out"
    monkeypatch.setattr(build, "export_graph", stop_at_dgc(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        export_model(ExportRequest(model=tiny_model_folder(), out=out, max_batch=2))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(build, "export_graph", stop_at_dgc(DQEdgeError("export failed", "report it")))
    assert _export(out) == 1
    assert "export failed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_manifest_describes_the_export():
    folder = tiny_export()
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["format"] == "dq-edge-export" and manifest["opset"] >= 17
    assert set(manifest["precisions"]) == {"fp32", "fp16", "int8"}
    from dq_edge.models.folder import model_hash

    assert manifest["source"]["model_hash"] == model_hash(tiny_model_folder())
    assert manifest["tokens"]["n_codes"] > 0 and manifest["max_length"] == manifest["dims"]["max_length"]
    assert manifest["calibration"]["source"].endswith(str(calib_folder()))
    info = load_export(folder, "fp16")
    assert set(info.files) == {
        "encoder", "dgc", "decoder", "transformer_position_step", "transformer_content_step", "transformer_prefill",
    }
    assert info.specs["transformer_prefill"].ranges["tokens"][2] == info.max_length


def test_load_export_errors(tmp_path):
    folder = tmp_path / "e"
    shutil.copytree(tiny_export(), folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["format_version"] = 0
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactMismatchError, match="format version"):
        load_export(folder, "fp32")
    with pytest.raises(UsageError):
        parse_precisions("fp32,bf16")
    assert parse_precisions("int8, FP32") == ["fp32", "int8"]


def test_manifest_reader_and_drivers_are_torch_free():
    """The runtime imports dq_edge.export (manifest) on devices without torch or onnx."""
    import subprocess
    import sys

    code = (
        "import sys, dq_edge.export, dq_edge.export.manifest, dq_edge.export.drive, dq_edge.export.accuracy;"
        "bad = [m for m in ('torch', 'onnx') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
