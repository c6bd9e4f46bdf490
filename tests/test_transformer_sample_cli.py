"""`dq-edge sample` on a tiny model folder (VAE + class-conditional transformer with a null class)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dq_edge.cli.main import main
from dq_edge.models.transformer import build_transformer, save_transformer
from dq_edge.models.vae import build_vae, save_vae
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    vae = build_vae("tiny", seed=0)
    cls_dir = save_vae(vae, tmp / "cls")
    save_transformer(build_transformer("tiny", vae.token_layout(n_classes=3, null_class=True), seed=0), cls_dir)
    unc_dir = save_vae(vae, tmp / "unc")
    save_transformer(build_transformer("tiny", vae.token_layout(), seed=1), unc_dir)
    return cls_dir, unc_dir


def test_sample_writes_images_grid_tokens(model_dirs, tmp_path, capsys):
    cls_dir, _ = model_dirs
    out = tmp_path / "s"
    args = ["sample", str(cls_dir), "--num", "3", "--batch", "3", "--class", "0", "--class", "2",
            "--seed", "4", "--top-k", "5", "--cfg-scale", "1.5", "--out", str(out), "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    pngs = sorted(p.name for p in out.glob("image_*.png"))
    assert pngs == ["image_0000.png", "image_0001.png", "image_0002.png"]
    size = build_vae("tiny").config.image_size
    assert Image.open(out / "image_0000.png").size == (size, size)
    assert (out / "grid.png").is_file()
    tokens = np.load(out / "tokens.npz")
    assert tokens["classes"].tolist() == [0, 2, 0]
    meta = json.loads((out / "sample.json").read_text())
    assert meta["sampling"]["cfg_scale"] == 1.5 and meta["sequence_lengths"] == tokens["lengths"].tolist()
    # same seed -> same tokens
    out2 = tmp_path / "s2"
    assert main(args[:-3] + ["--out", str(out2), "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(out2 / "tokens.npz")["content"], tokens["content"])


@pytest.mark.parametrize(
    "which, extra, needle, code",
    [
        ("cls", ["--class", "7"], "out of range", 1),
        ("unc", ["--cfg-scale", "2"], "guidance needs a class-conditional model", 1),
        ("unc", ["--top-k", "0"], "--top-k", 2),  # a bad flag value is a usage error
        ("unc", ["--top-p", "1.5"], "--top-p", 2),
        ("unc", ["--top-p-pos", "0"], "--top-p-pos", 2),
        ("unc", ["--class", "1"], "unconditional", 1),
    ],
)
def test_sample_bad_input(model_dirs, tmp_path, capsys, which, extra, needle, code):
    folder = model_dirs[0] if which == "cls" else model_dirs[1]
    out = tmp_path / "bad"
    rc = main(["sample", str(folder), "--num", "1", "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc == code, err
    assert err.startswith("error:") and needle in err and "Traceback" not in err
    assert not out.exists()


def test_sample_needs_a_transformer(tmp_path, capsys):
    vae_only = save_vae(build_vae("tiny", seed=0), tmp_path / "v")
    rc = main(["sample", str(vae_only), "--num", "1", "--out", str(tmp_path / "o")])
    assert rc == 1 and "no transformer" in capsys.readouterr().err
