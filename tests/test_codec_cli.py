"""`dq-edge encode` / `dq-edge decode`: outputs, summary, and one `error: ... (hint: ...)` line
for bad inputs with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import export_helpers
import runtime_fixtures
from codec_fixtures import image_files
from dq_edge.cli.main import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def encoded_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("codec_cli") / "dqt"
    assert main(["encode", str(runtime_fixtures.class_export()), *map(str, image_files()[:3]), "--out", str(out),
                 "--class", "2", "--threads", "1"]) == 0
    return out


def test_encode_writes_files_and_summary(encoded_dir):
    summary = json.loads((encoded_dir / "summary.json").read_text())
    assert summary["backend"] == "ort-cpu" and summary["coder"] == "model"
    names = [p.stem for p in image_files()[:3]]
    assert sorted(p.stem for p in encoded_dir.glob("*.dqt")) == sorted(names)
    for row in summary["images"]:
        assert row["bytes"] == (encoded_dir / row["file"]).stat().st_size
        assert row["class"] == 2 and row["codes"] > 0


def test_decode_writes_the_export_reconstruction(tmp_path, capsys, encoded_dir):
    from codec_fixtures import ort_codec, pixels
    from dq_edge.runtime.images import to_uint8

    code, out, err = _run(capsys, "decode", runtime_fixtures.class_export(), encoded_dir, "--out", tmp_path / "png", "--threads", "1")
    assert code == 0, err
    codec = ort_codec()
    expected = to_uint8(codec.backend.decode(codec.backend.encode(pixels()[:3])[1]))
    for i, p in enumerate(image_files()[:3]):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "png" / f"{p.stem}.png")), expected[i])


def _copy_dqt(encoded_dir: Path, tmp: Path) -> Path:
    target = tmp / "in"
    target.mkdir()
    shutil.copy(next(encoded_dir.glob("*.dqt")), target / "a.dqt")
    return target / "a.dqt"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD = {
    "missing-image": (lambda t, e: ["encode", "{export}", t / "nope.png", "--out", t / "o"], "does not exist", 1),
    "wrong-size-image": (
        lambda t, e: ["encode", "{export}", _wrong_size(t), "--out", t / "o"], "the model takes 16x16", 1),
    "not-a-dqt": (lambda t, e: ["decode", "{export}", _write(t / "x.dqt", b"\x89PNG\r\n\x1a\n" + bytes(40)), "--out", t / "o"],
                  "not a .dqt file", 1),
    "truncated-dqt": (lambda t, e: ["decode", "{export}", _truncate(_copy_dqt(e, t)), "--out", t / "o"], "a.dqt:", 1),
    "wrong-model": (lambda t, e: ["decode", "{other}", _copy_dqt(e, t), "--out", t / "o"], "not with this model", 1),
    "out-holds-input": (lambda t, e: ["decode", "{export}", _copy_dqt(e, t), "--out", t / "in", "--overwrite"], "contains the input", 2),
    "missing-model": (lambda t, e: ["decode", t / "no-model", _copy_dqt(e, t), "--out", t / "o"], "does not exist", 1),
}


def _wrong_size(tmp: Path) -> Path:
    Image.new("RGB", (20, 16), (1, 2, 3)).save(tmp / "wide.png")
    return tmp / "wide.png"


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:-7])
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, encoded_dir, case):
    build, expect, exit_code = BAD[case]
    argv = build(tmp_path, encoded_dir)
    subs = {"{export}": str(runtime_fixtures.class_export()), "{other}": str(export_helpers.tiny_model_folder())}
    argv = [subs.get(str(a), str(a)) for a in argv]
    before = _tree(tmp_path)
    code, _, err = _run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == exit_code and len(lines) == 1, err
    assert lines[0].startswith("error: ") and "(hint: " in lines[0] and expect in lines[0], lines[0]
    assert _tree(tmp_path) == before and not any(p.name.startswith(".") for p in tmp_path.rglob("*"))


def test_encode_and_decode_without_torch_give_the_same_bytes(tmp_path, encoded_dir):
    """A device with only numpy + onnxruntime: the same .dqt bytes as in-process, and it decodes them."""
    from test_runtime_torchfree import run_without_torch

    export = str(runtime_fixtures.class_export())
    proc = run_without_torch(["encode", export, *map(str, image_files()[:3]), "--out", str(tmp_path / "dqt"),
                              "--class", "2", "--threads", "1"])
    assert proc.returncode == 0 and "TORCH_MODULES []" in proc.stderr, proc.stderr
    for p in encoded_dir.glob("*.dqt"):
        assert (tmp_path / "dqt" / p.name).read_bytes() == p.read_bytes()
    proc = run_without_torch(["decode", export, str(encoded_dir), "--out", str(tmp_path / "png"), "--threads", "1"])
    assert proc.returncode == 0 and "TORCH_MODULES []" in proc.stderr, proc.stderr
    assert len(list((tmp_path / "png").glob("*.png"))) == 3
