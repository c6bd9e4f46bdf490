"""Bad input to `dq-edge run`: one-line error, exit 1 (2 for usage), nothing written to --out."""

from __future__ import annotations

import json

import numpy as np
import pytest

import export_helpers
from dq_edge.cli.main import main
from dq_edge.errors import InputError
from dq_edge.runtime.pipeline import resolve_classes
from dq_edge.tokens import TokenLayout
from runtime_fixtures import copy_export


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(["run", "--backend", "ort-cpu", "--threads", "1", "--quiet", *args])
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line_error(code: int, err: str, pattern: str, exit_code: int = 1) -> None:
    assert code == exit_code, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert pattern in lines[0], lines[0]


def assert_no_output(tmp_path, out) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no temp leftovers


def test_altered_graph_file(tmp_path, capsys):
    export = copy_export(tmp_path)
    with open(export / "transformer_position_step.fp32.onnx", "ab") as fh:
        fh.write(b"\0")
    out = tmp_path / "out"
    code, err = run(capsys, "--engine", str(export), "--out", str(out))
    assert_one_line_error(code, err, "re-run `dq-edge export")
    assert "sha256" in err
    assert_no_output(tmp_path, out)


def test_missing_graph_file(tmp_path, capsys):
    export = copy_export(tmp_path)
    (export / "decoder.fp32.onnx").unlink()
    out = tmp_path / "out"
    code, err = run(capsys, "--engine", str(export), "--out", str(out))
    assert_one_line_error(code, err, "missing")
    assert "re-run `dq-edge export" in err
    assert_no_output(tmp_path, out)


def test_manifest_from_another_version(tmp_path, capsys):
    export = copy_export(tmp_path)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["format_version"] = 99
    (export / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    code, err = run(capsys, "--engine", str(export), "--out", str(out))
    assert_one_line_error(code, err, "format version 99")
    assert_no_output(tmp_path, out)


def test_not_an_export_folder(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    code, err = run(capsys, "--engine", str(tmp_path / "plain"), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "has no manifest.json")


def test_batch_above_exported_max(tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run(capsys, "--engine", str(export_helpers.tiny_export()), "--batch", str(export_helpers.MAX_BATCH + 1), "--out", str(out))
    assert_one_line_error(code, err, f"maximum of {export_helpers.MAX_BATCH}")
    assert_no_output(tmp_path, out)


def test_class_on_unconditional_model(tmp_path, capsys):
    code, err = run(capsys, "--engine", str(export_helpers.tiny_export()), "--class", "3", "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "unconditional")


def test_class_out_of_range():
    layout = TokenLayout(n_codes=8, coarse_hw=(2, 2), fine_hw=(4, 4), n_classes=3, null_class=True)
    assert resolve_classes(layout, 4, [2, 0]) == (2, 0, 2, 0)
    assert resolve_classes(layout, 4, None) == (0, 1, 2, 0)
    with pytest.raises(InputError, match=r"class id 3 is out of range for this model \(0..2\)"):
        resolve_classes(layout, 2, [3])  # the null class is not a user class


@pytest.mark.parametrize("backend, needle", [("ort-cuda", "onnxruntime-gpu"), ("ort-trt", "onnxruntime-gpu"), ("trt", "build-engine")])
def test_unavailable_backend_requested(tmp_path, capsys, backend, needle):
    out = tmp_path / "out"
    code = main(["run", "--engine", str(export_helpers.tiny_export()), "--backend", backend, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert_one_line_error(code, err, needle)
    assert_no_output(tmp_path, out)


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code, err = run(capsys, "--engine", str(export_helpers.tiny_export()), "--out", str(blocker / "out"))
    assert_one_line_error(code, err, "cannot write the output folder")


def test_existing_output_kept(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    code, err = run(capsys, "--engine", str(export_helpers.tiny_export()), "--out", str(out))
    assert_one_line_error(code, err, "is not empty", exit_code=2)
    assert (out / "mine.txt").read_text() == "user data"


def test_usage_errors(tmp_path, capsys):
    engine = str(export_helpers.tiny_export())
    code, err = run(capsys, "--engine", engine, "--keep-ratio", "0.3", "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "--keep-ratio only applies", exit_code=2)
    code, err = run(capsys, "--engine", engine, "--classes", "1,x", "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "comma-separated integers", exit_code=2)
    code, err = run(capsys, "--engine", engine, "--top-p", "1.5", "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "--top-p must be in (0, 1]", exit_code=2)
    code, err = run(capsys, "--engine", engine, "--complete", str(tmp_path / "none.png"), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "o").exists()


def test_failure_mid_write_leaves_nothing(tmp_path, capsys, monkeypatch):
    """An error after some images were written: the temp folder is removed, --out never appears."""
    from dq_edge.runtime import images

    calls = {"n": 0}
    real = images.save_png

    def failing(path, image):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real(path, image)

    monkeypatch.setattr(images, "save_png", failing)
    out = tmp_path / "out"
    code = main(["run", "--engine", str(export_helpers.tiny_export()), "--backend", "ort-cpu", "--num", "3", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "No space left" in err
    assert calls["n"] == 2
    assert_no_output(tmp_path, out)


def test_complete_runs_and_keeps_prefix(tmp_path, capsys):
    from dq_edge.runtime.images import save_png, to_uint8

    image = export_helpers.images(1, seed=3)
    save_png(tmp_path / "in.png", to_uint8(image)[0])
    out = tmp_path / "out"
    code, err = run(capsys, "--engine", str(export_helpers.tiny_export()), "--complete", str(tmp_path / "in.png"),
                    "--keep-ratio", "0.5", "--num", "2", "--out", str(out))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    kept = summary["complete"]["kept_tokens"]
    tokens = np.load(out / "tokens.npz")
    assert kept >= 2 and (tokens["content"][:, :kept] == tokens["content"][0, :kept]).all()
    assert summary["stages"]["encoder"]["calls"] == 1 and summary["stages"]["prefill"]["calls"] == 1


def test_class_model_via_cli(tmp_path, capsys):
    from runtime_fixtures import class_export

    engine = str(class_export())
    code, err = run(capsys, "--engine", engine, "--class", "3", "--out", str(tmp_path / "bad"))
    assert_one_line_error(code, err, "class id 3 is out of range for this model (0..2)")
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "out"
    code, err = run(capsys, "--engine", engine, "--classes", "2,0", "--cfg-scale", "2", "--num", "3", "--out", str(out))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"] == [2, 0, 2] and summary["batch"] == export_helpers.MAX_BATCH // 2
    tokens = np.load(out / "tokens.npz")
    layout = TokenLayout.from_dict(json.loads((class_export() / "manifest.json").read_text())["tokens"])
    assert tokens["content"][:, 0].tolist() == [layout.content_start(c) for c in (2, 0, 2)]
