"""Catalogue cases: usage errors, numbers and options, images, training configs, checks and
metrics, one or more per command. Run by tests/test_bad_input_catalogue.py (see tests/catalogue.py).

Setups copy the session's tiny model / export (tests/export_helpers.py, tests/runtime_fixtures.py)
into the case folder, so a command that wrongly wrote into its inputs would be caught.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from catalogue import Case
import image_files

# ------------------------------------------------------------------------------ inputs


def _model(tmp: Path) -> str:
    from export_helpers import tiny_model_folder

    return str(shutil.copytree(tiny_model_folder(), tmp / "model"))


def _class_model(tmp: Path) -> str:
    from runtime_fixtures import class_model_folder

    return str(shutil.copytree(class_model_folder(), tmp / "class_model"))


def _export(tmp: Path) -> str:
    """fp32-only export of the class-conditional tiny model (3 classes)."""
    from runtime_fixtures import class_export

    return str(shutil.copytree(class_export(), tmp / "export"))


def _image_size() -> int:
    from dq_edge.reconstruct import model_image_size
    from export_helpers import tiny_model_folder

    return model_image_size(str(tiny_model_folder()))


def model(tmp: Path) -> dict[str, str]:
    return {"model": _model(tmp)}


def class_model(tmp: Path) -> dict[str, str]:
    return {"model": _class_model(tmp)}


def export(tmp: Path) -> dict[str, str]:
    return {"export": _export(tmp)}


def images_folder(tmp: Path) -> dict[str, str]:
    folder = tmp / "pictures"
    folder.mkdir()
    for i in range(3):
        image_files.rgb_png(folder / f"{i}.png", _image_size(), seed=i)
    return {"pictures": str(folder)}


def _with_image(make, size: int | None = None):
    """Setup: a model, an export and one image file made by `make`."""

    def setup(tmp: Path) -> dict[str, str]:
        path = tmp / f"{make.__name__}.png"
        make(path) if size is None else make(path, size)
        return {"model": _model(tmp), "export": _export(tmp), "image": str(path)}

    setup.__name__ = f"with_{make.__name__}"
    return setup


def _wrong_size_png(path: Path) -> Path:
    return image_files.rgb_png(path, size=_image_size() + 8)


def _train_yaml(text: str):
    def setup(tmp: Path) -> dict[str, str]:
        path = tmp / "train.yaml"
        path.write_text(text)
        return {"config": str(path)}

    return setup


def run_folder_without_record(tmp: Path) -> dict[str, str]:
    """PNGs and a grid, but no tokens.npz: not something run/sample wrote."""
    folder = tmp / "samples"
    folder.mkdir()
    for i in range(3):
        image_files.rgb_png(folder / f"image_{i:04d}.png", 16, seed=i)
    image_files.rgb_png(folder / "grid.png", 40)
    return {"samples": str(folder), **images_folder(tmp)}


def run_folder_missing_image(tmp: Path) -> dict[str, str]:
    folder = tmp / "samples"
    folder.mkdir()
    for i in range(2):
        image_files.rgb_png(folder / f"image_{i:04d}.png", 16, seed=i)
    np.savez(folder / "tokens.npz", lengths=np.full(3, 9))  # records 3 images, 2 present
    return {"samples": str(folder), **images_folder(tmp)}


def not_a_tokens_file(tmp: Path) -> dict[str, str]:
    folder = tmp / "samples"
    folder.mkdir()
    (folder / "tokens.npz").write_text("not a zip")
    return {"samples": str(folder), **images_folder(tmp)}


def broken_images_folder(tmp: Path) -> dict[str, str]:
    """A folder of images none of which can be read (all truncated)."""
    folder = tmp / "broken"
    folder.mkdir()
    for i in range(2):
        image_files.truncated_png(folder / f"{i}.png")
    return {"broken": str(folder)}


def empty_folder(tmp: Path) -> dict[str, str]:
    (tmp / "empty").mkdir()
    return {"empty": str(tmp / "empty")}


def official_yaml_only(tmp: Path) -> dict[str, str]:
    (tmp / "official.yaml").write_text("model:\n  target: x\n  params: {}\n")
    return {"yaml": str(tmp / "official.yaml")}


def _json_file(name: str, text: str):
    def setup(tmp: Path) -> dict[str, str]:
        (tmp / name).write_text(text)
        return {"file": str(tmp / name)}

    return setup


# ------------------------------------------------------------------------------ cases
TRAIN_YAML = [  # (id, file text, expected words)
    ("train-yaml-lr-word", "lr: fast\n", "lr: Input should be a valid number"),
    ("train-yaml-batch-negative", "batch: -2\n", "batch: Input should be greater"),
    ("train-yaml-steps-fraction", "steps: 2.5\n", "steps:"),
    ("train-yaml-unknown-key", "stpes: 10\n", "unknown training config keys: stpes"),
    ("train-yaml-not-a-mapping", "- lr\n- steps\n", "must hold a mapping"),
    ("train-yaml-syntax", "lr: [1, 2\n", "is not valid YAML"),
]
BAD_IMAGES = [  # (id suffix, file maker, expected words)
    ("truncated-png", image_files.truncated_png, "truncated"),
    ("decompression-bomb", image_files.bomb_png, "pixels this tool reads"),
    ("header-over-limit", image_files.bomb_png_64mp, "8000x8000"),
    ("not-an-image", image_files.not_an_image, "not a readable image"),
    ("float-pixels", image_files.float_tiff, "pixel mode F"),
]
OUT = "{tmp}/out"


def _dqt_junk(tmp: Path) -> dict[str, str]:
    """An export and a file named .dqt that is not one."""
    (tmp / "junk.dqt").write_bytes(b"not a dqt file at all" * 4)
    return {"export": _export(tmp), "junk": str(tmp / "junk.dqt")}


def _export_and_image(tmp: Path) -> dict[str, str]:
    path = image_files.rgb_png(tmp / "x.png", _image_size())
    return {"export": _export(tmp), "image": str(path)}


CASES: list[Case] = [
    # usage: click/typer's own errors end as our one line, exit 2
    Case("usage-unknown-command", "usage", ["no-such-command"], "No such command 'no-such-command'", 2),
    Case("usage-unknown-option", "usage", ["run", "--out", OUT, "--no-such-flag"], "No such option: --no-such-flag", 2),
    Case("usage-not-an-integer", "usage", ["sample", "{model}", "--out", OUT, "--num", "many"], "Invalid value for '--num'", 2, model),
    Case("usage-missing-argument", "usage", ["reconstruct"], "Missing argument", 2),
    Case("usage-missing-option", "usage", ["export", "{model}"], "Missing option '--out'", 2, model),
    Case("usage-eval-missing-data", "usage", ["eval", "recon", "{model}"], "Missing option '--data'", 2, model),
    Case("usage-bad-float", "usage", ["bench", "--fine-ratio", "half"], "Invalid value for '--fine-ratio'", 2),
    Case("data-unknown-dataset", "usage", ["data", "prepare", "imagenet"], "unknown built-in dataset 'imagenet'", 2),
    # numbers and options
    Case("run-threads-negative", "numbers", ["run", "--out", OUT, "--threads", "-1"], "'--threads'", 2),
    Case("sample-threads-zero", "numbers", ["sample", "{model}", "--out", OUT, "--threads", "0"], "'--threads'", 2, model),
    Case("bench-threads-negative", "numbers", ["bench", "--threads", "-4"], "'--threads'", 2),
    Case("eval-threads-zero", "numbers", ["eval", "recon", "{model}", "--data", "emoji64", "--threads", "0"], "'--threads'", 2, model),
    Case("train-threads-negative", "numbers", ["train", "vae", "--out", OUT, "--threads", "-1"], "'--threads'", 2),
    Case("run-keep-ratio-without-complete", "numbers", ["run", "--engine", "{export}", "--out", OUT, "--keep-ratio", "0.3"],
         "--keep-ratio only applies with --complete", 2, export),
    Case("run-classes-not-integers", "numbers", ["run", "--engine", "{export}", "--out", OUT, "--classes", "cat,dog"],
         "--classes must be comma-separated integers", 2, export),
    Case("run-class-out-of-range", "numbers", ["run", "--engine", "{export}", "--out", OUT, "--class", "7", "--num", "1"],
         "class id 7 is out of range", 1, export),
    Case("sample-class-out-of-range", "numbers", ["sample", "{model}", "--out", OUT, "--class", "9", "--num", "1"], "class id 9 is out of range", 1,
         class_model),
    Case("eval-gen-num-one", "numbers", ["eval", "gen", "{model}", "--data", "emoji64", "--num", "1"], "--num must be at least 2", 2, model),
    Case("check-unknown-precision", "numbers", ["check", "{export}", "--no-lint", "--precision", "int9"], "unknown precision int9", 2, export),
    # images: read correctly or refused, every failure named
    *[
        Case(f"reconstruct-{name}", "images", ["reconstruct", "{model}", "{image}", "--out", OUT], expect, 1, _with_image(make))
        for name, make, expect in BAD_IMAGES
    ],
    Case("reconstruct-wrong-size", "images", ["reconstruct", "{model}", "{image}", "--out", OUT], "pass --resize",
         1, _with_image(_wrong_size_png)),
    Case("reconstruct-missing-image", "images", ["reconstruct", "{model}", "{tmp}/nope.png", "--out", OUT], "does not exist", 1, model),
    Case("run-complete-wrong-size", "images", ["run", "--engine", "{export}", "--out", OUT, "--complete", "{image}"], "the model expects",
         1, _with_image(_wrong_size_png)),
    Case("run-complete-truncated", "images", ["run", "--engine", "{export}", "--out", OUT, "--complete", "{image}"], "truncated",
         1, _with_image(image_files.truncated_png)),
    Case("run-complete-bomb", "images", ["run", "--engine", "{export}", "--out", OUT, "--complete", "{image}"], "pixels this tool reads",
         1, _with_image(image_files.bomb_png)),
    Case("run-complete-missing", "images", ["run", "--engine", "{export}", "--out", OUT, "--complete", "{tmp}/nope.png"], "does not exist",
         1, export),
    Case("data-info-unreadable-folder", "images", ["data", "info", "{broken}"], "could be read", 1, broken_images_folder),
    Case("data-info-empty-folder", "images", ["data", "info", "{empty}"], "no images found", 1, empty_folder),
    Case("data-info-image-size-negative", "numbers", ["data", "info", "{pictures}", "--image-size", "-1"], "image size -1 is outside",
         1, images_folder),
    Case("data-info-image-size-huge", "numbers", ["data", "info", "{pictures}", "--image-size", "100000"], "image size 100000 is outside",
         1, images_folder),
    Case("eval-recon-num-zero", "numbers", ["eval", "recon", "{model}", "--data", "{pictures}", "--no-fid", "--num", "0"],
         "--num", 2, model),
    # training configs: typed, ranges, key paths
    *[
        Case(case_id, "training-config", ["train", "vae", "--config", "{config}", "--out", OUT], expect, 1, _train_yaml(text))
        for case_id, text, expect in TRAIN_YAML
    ],
    Case("train-yaml-vae-not-a-mapping", "training-config",
         ["train", "vae", "--config", "{config}", "--out", OUT, "--target-fine-ratio", "0.3"], "`vae` must be a mapping",
         1, _train_yaml("vae: 3\n")),
    Case("train-config-missing", "training-config", ["train", "vae", "--config", "{tmp}/nope.yaml", "--out", OUT], "does not exist", 1),
    Case("train-transformer-without-vae", "training-config", ["train", "transformer", "--out", OUT], "stage 2 needs the trained VAE", 1),
    # checks and metrics: nothing checked or measured is an error
    Case("check-precision-not-exported", "checks-metrics", ["check", "{export}", "--no-lint", "--precision", "int8"],
         "no graphs of int8 to check", 1, export),
    Case("check-one-precision-not-exported", "checks-metrics", ["check", "{export}", "--no-lint", "--precision", "fp32,fp16"],
         "no graphs of fp16 to check", 1, export),
    Case("check-missing-folder", "checks-metrics", ["check", "{tmp}/nope"], "nope", 1),
    Case("eval-gen-folder-without-record", "checks-metrics", ["eval", "gen", "{samples}", "--data", "{pictures}", "--num", "2"],
         "has no tokens.npz", 1, run_folder_without_record),
    Case("eval-gen-recorded-image-missing", "checks-metrics", ["eval", "gen", "{samples}", "--data", "{pictures}", "--num", "2"],
         "records 3 images but 1 are missing", 1, run_folder_missing_image),
    Case("eval-gen-corrupt-record", "checks-metrics", ["eval", "gen", "{samples}", "--data", "{pictures}", "--num", "2"],
         "is not a tokens file", 1, not_a_tokens_file),
    Case("eval-recon-missing-model", "checks-metrics", ["eval", "recon", "{tmp}/nomodel", "--data", "{pictures}", "--no-fid"],
         "nomodel", 1, images_folder),
    # other commands: missing inputs
    Case("export-int8-without-calibration", "missing-inputs", ["export", "{model}", "--out", OUT, "--precision", "int8"], "int8 needs calibration", 2, model),
    Case("export-calibration-folder-missing", "missing-inputs",
         ["export", "{model}", "--out", OUT, "--precision", "int8", "--calib-images", "{tmp}/nope"], "nope", 2, model),
    Case("export-missing-model", "missing-inputs", ["export", "{tmp}/nomodel", "--out", OUT], "nomodel", 2),
    Case("import-official-missing-ckpt", "missing-inputs", ["import-official", "--ckpt", "{tmp}/x.ckpt", "--config", "{yaml}", "--out", OUT],
         "x.ckpt", 1, official_yaml_only),
    Case("build-engine-missing-export", "missing-inputs", ["build-engine", "{tmp}/nope", "--dry-run"], "nope", 1),
    Case("compare-missing-export", "missing-inputs", ["compare", "{tmp}/nope"], "nope", 1),
    Case("bench-missing-engine", "missing-inputs", ["bench", "--engine", "{tmp}/nope"], "nope", 1),
    Case("run-missing-engine", "missing-inputs", ["run", "--engine", "{tmp}/nope", "--out", OUT], "nope", 1),
    Case("sample-missing-model", "missing-inputs", ["sample", "{tmp}/nomodel", "--out", OUT], "nomodel", 1),
    # codec and serving
    Case("encode-missing-image", "codec-serving", ["encode", "{export}", "{tmp}/nope.png", "--out", OUT], "nope.png", 1, export),
    Case("encode-out-inside-export", "codec-serving", ["encode", "{export}", "{image}", "--out", "{export}/dqt"], "inside", 2, _export_and_image),
    Case("encode-threads-zero", "codec-serving", ["encode", "{export}", "{image}", "--out", OUT, "--threads", "0"], "'--threads'", 2, _export_and_image),
    Case("decode-not-a-dqt", "codec-serving", ["decode", "{export}", "{junk}", "--out", OUT], "not a .dqt file", 1, _dqt_junk),
    Case("export-triton-out-is-engine", "codec-serving", ["export-triton", "--engine", "{export}", "--out", "{export}"], "input", 2, export),
    Case("export-triton-max-batch-too-big", "codec-serving", ["export-triton", "--engine", "{export}", "--out", OUT, "--max-batch", "99"],
         "outside 1..", 2, export),
    Case("serve-missing-engine", "codec-serving", ["serve", "--engine", "{tmp}/nope"], "nope", 1),
]
