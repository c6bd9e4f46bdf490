"""`dq-edge reconstruct`: outputs, bundled samples, error paths."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from dq_edge.cli.main import main
from dq_edge.models import build_vae, save_vae
from dq_edge.reconstruct import bundled_samples, grain_overlay
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)


def test_bundled_samples_are_64px_rgb():
    samples = bundled_samples()
    assert len(samples) >= 8
    for p in samples:
        with Image.open(p) as im:
            assert im.size == (64, 64) and im.mode == "RGB"


def test_reconstruct_preset_with_resize(tmp_path, capsys):
    imgs = [str(p) for p in bundled_samples()[:2]]
    out = tmp_path / "out"
    assert main(["reconstruct", "tiny", *imgs, "--resize", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "RANDOM weights" in text and "PSNR" in text
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["images"]] == [p.split("/")[-1][:-4] for p in imgs]
    for r in summary["images"]:
        assert 16 <= r["n_codes"] <= 64 and 0 <= r["fine_ratio"] <= 1
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (3 * 18 + 2, 2 * 18 + 2)  # 3 columns x 2 rows of 16 px tiles, 2 px padding
    for sub in ("recon", "grain"):
        assert sorted(p.name for p in (out / sub).iterdir()) == sorted(p.split("/")[-1] for p in imgs)


def test_reconstruct_model_folder(tmp_path, capsys):
    save_vae(build_vae("tiny", seed=0), tmp_path / "m")
    rgb = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img.png")
    assert main(["reconstruct", str(tmp_path / "m"), str(tmp_path / "img.png"), "--out", str(tmp_path / "o")]) == 0
    assert "model folder" in capsys.readouterr().out
    assert (tmp_path / "o" / "recon" / "img.png").is_file()


def test_reconstruct_errors(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["reconstruct", "tiny", "--out", str(out)]) == 1  # bundled 64 px samples, 16 px model
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resize" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["reconstruct", "no-such-model", "--out", str(out)]) == 1
    assert "neither a model folder nor a preset" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["reconstruct", "tiny", str(tmp_path / "bad.png"), "--out", str(out)]) == 1
    assert "not a readable image" in capsys.readouterr().err
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["reconstruct", "tiny", "--resize", "--out", str(out)]) == 2
    assert (out / "keep.txt").exists()


def test_grain_overlay_marks_fine_subcells():
    img = np.full((8, 8, 3), 200, np.uint8)
    grain = np.array([[1, 0], [0, 0]])
    ov = grain_overlay(img, grain)
    assert ov.shape == (8, 8, 3)
    assert (ov[2, 1] == 40).all()  # mid-line of the fine region (top-left)
    assert not (ov[6, 5] == 40).all()  # interior of a coarse region: no mid-line
    assert ov[1, 1, 0] > ov[1, 1, 2] and ov[5, 5, 2] > ov[5, 5, 0]  # warm fine, cool coarse
