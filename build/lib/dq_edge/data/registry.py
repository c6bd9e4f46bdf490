"""Resolve a dataset spec: a built-in name (`emoji64`, `fmnist`) or a path to an image folder."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from dq_edge.data import emoji64, fmnist
from dq_edge.data.cache import dataset_dir
from dq_edge.data.image_folder import load_image_folder
from dq_edge.data.imageset import ImageSet, load_npz
from dq_edge.errors import InputError, UsageError

PREPARERS: dict[str, Callable[..., dict[str, Path]]] = {emoji64.NAME: emoji64.prepare, fmnist.NAME: fmnist.prepare}
BUILTINS = tuple(PREPARERS)


def prepare_dataset(name: str, force: bool = False) -> dict[str, Path]:
    if name not in PREPARERS:
        raise UsageError(f"unknown built-in dataset {name!r}", f"choose one of {', '.join(BUILTINS)}; image folders need no prepare")
    return PREPARERS[name](force=force)


def load_dataset(spec: str, split: str = "train", image_size: int | None = None) -> ImageSet:
    """`split` is train|test for built-ins; for a folder, `<folder>/<split>` is used when it exists."""
    if spec in PREPARERS:
        if split not in ("train", "test"):
            raise UsageError(f"dataset {spec} has splits train and test, not {split!r}", "pass --split train or --split test")
        path = dataset_dir(spec) / f"{split}.npz"
        if path.is_file():
            s = load_npz(path, spec, split)
        elif spec == fmnist.NAME and fmnist.SYSTEM_DIR.is_dir():
            s = fmnist.load_idx_split(fmnist.SYSTEM_DIR, split)  # readable in place; prepare only caches it
        else:
            raise InputError(f"dataset {spec} is not prepared ({path} missing)", f"run `dq-edge data prepare {spec}`")
    elif Path(spec).exists():
        s = load_image_folder(spec, image_size=image_size, split=split)
    else:
        raise InputError(f"{spec!r} is neither a built-in dataset ({', '.join(BUILTINS)}) nor an existing folder", "check the spelling or the path")
    if image_size is not None and s.image_size != image_size:
        raise InputError(
            f"dataset {spec} has {s.image_size}x{s.image_size} images but the model needs {image_size}x{image_size}",
            "pick the preset that matches the dataset (emoji64 -> 64 px, fmnist -> 32 px)",
        )
    return s
