"""Any folder of images (recursive). Class labels from first-level subfolders when every image
sits in one; files that do not decode are skipped and counted, never fatal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dq_edge.data.imageset import ImageSet
from dq_edge.data.pixels import pil_to_array, square_resize
from dq_edge.errors import InputError
from dq_edge.runtime.images import read_rgb

MAX_IMAGE_SIZE = 4096  # pixels per side after resizing
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def load_image_folder(root: str | Path, image_size: int | None = None, split: str = "all") -> ImageSet:
    """Load every image under `root`. If `root/<split>` exists it is used instead (train/test layout).

    `image_size`: center-crop + resize to this square size; without it all images must share
    one square size (the first readable image decides).
    """
    root = Path(root)
    if image_size is not None and not 1 <= image_size <= MAX_IMAGE_SIZE:
        # every image is resized to this before it is kept: a typo like 100000 would ask for 30 GB each
        raise InputError(f"image size {image_size} is outside 1..{MAX_IMAGE_SIZE}", "use the model's image size (e.g. 64)")
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist", "pass a folder of images or a built-in dataset name (emoji64, fmnist)")
    if split != "all" and (root / split).is_dir():
        root = root / split
    else:
        split = "all"
    files = list_images(root)
    if not files:
        raise InputError(f"no images found under {root}", f"put .png/.jpg files there (suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    # class subfolders: every file sits below a first-level directory
    top = [p.relative_to(root).parts for p in files]
    labelled = all(len(parts) >= 2 for parts in top)
    class_names = sorted({parts[0] for parts in top}) if labelled else []
    class_index = {c: i for i, c in enumerate(class_names)}

    arrays: list[np.ndarray] = []
    labels: list[int] = []
    skipped = 0
    size = image_size
    for path, parts in zip(files, top):
        try:
            rgb = read_rgb(path)
        except InputError:  # unreadable, truncated, oversized or an unsupported pixel format
            skipped += 1
            continue
        if size is None:
            if rgb.size[0] != rgb.size[1]:
                raise InputError(f"{path} is {rgb.size[0]}x{rgb.size[1]}, not square", "pass --image-size N to center-crop and resize")
            size = rgb.size[0]
        if image_size is None and rgb.size != (size, size):
            raise InputError(
                f"{path} is {rgb.size[0]}x{rgb.size[1]} but earlier images are {size}x{size}",
                "pass --image-size N to resize every image to one size",
            )
        arrays.append(pil_to_array(square_resize(rgb, size)))
        if labelled:
            labels.append(class_index[parts[0]])
    if not arrays:
        raise InputError(f"none of the {len(files)} image files under {root} could be read", "check that they are valid images")
    images = np.stack(arrays)  # [N, H, W, 3]
    meta = {"source": "image folder", "root": str(root)}
    if image_size is not None:
        meta["preprocessing"] = f"RGB on white, center-cropped to square and resized (bicubic) to {image_size}x{image_size}"
    return ImageSet(
        images,
        np.asarray(labels, np.int64) if labelled else None,
        class_names,
        name=str(root),
        split=split,
        skipped=skipped,
        meta=meta,
    )
