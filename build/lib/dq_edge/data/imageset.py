"""`ImageSet`: a whole split held as compact uint8 pixels, plus its stored `.npz` form.

Images are kept as uint8 [N, H, W, C] (C = 1 or 3) so a 60k-image split costs tens of MB;
conversion to float [-1, 1] happens per batch (dq_edge/data/batches.py).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dq_edge.atomic import atomic_path
from dq_edge.errors import InputError


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray | None  # int64 [N] or None (unlabelled)
    class_names: list[str]
    name: str
    split: str
    skipped: int = 0  # unreadable files skipped while loading (image folders)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8 or self.images.shape[-1] not in (1, 3):
            raise InputError(
                f"dataset {self.name}/{self.split}: expected uint8 [N,H,W,1|3] pixels, got {self.images.dtype} {self.images.shape}",
                "re-run `dq-edge data prepare` for this dataset",
            )
        if len(self.images) == 0:
            raise InputError(f"dataset {self.name}/{self.split} is empty", "check the path or re-run `dq-edge data prepare`")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise InputError(
                f"dataset {self.name}/{self.split}: {len(self.labels)} labels for {len(self.images)} images",
                "re-run `dq-edge data prepare` for this dataset",
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def info(self) -> dict:
        d = {
            "name": self.name,
            "split": self.split,
            "num_images": len(self),
            "image_hw": list(self.images.shape[1:3]),
            "channels": int(self.images.shape[3]),
            "n_classes": self.n_classes,
            "skipped_unreadable": self.skipped,
        }
        if self.labels is not None:
            counts = np.bincount(self.labels, minlength=len(self.class_names))
            d["class_counts"] = {n: int(c) for n, c in zip(self.class_names, counts)}
        d.update(self.meta)
        return d

    def subset(self, num: int | None) -> "ImageSet":
        """First `num` images (deterministic, so cached real-set statistics stay valid)."""
        if num is None or num >= len(self):
            return self
        labels = None if self.labels is None else self.labels[:num]
        return ImageSet(self.images[:num], labels, self.class_names, self.name, self.split, self.skipped, dict(self.meta))


def save_npz(path: Path, s: ImageSet) -> None:
    """Atomic: a killed prepare never leaves a truncated split behind."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                images=s.images,
                labels=s.labels if s.labels is not None else np.zeros(0, np.int64),
                has_labels=np.array(s.labels is not None),
                class_names=np.array(s.class_names, dtype=np.str_),
                meta=np.array(json.dumps(s.meta)),
            )


def load_npz(path: Path, name: str, split: str) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z["images"]
            has_labels = bool(z["has_labels"])
            labels = z["labels"].astype(np.int64) if has_labels else None
            class_names = [str(c) for c in z["class_names"]]
            meta = json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise InputError(
            f"prepared dataset file {path} is corrupt: {exc}", f"delete it and run `dq-edge data prepare {name}`"
        ) from exc
    return ImageSet(images, labels, class_names, name, split, 0, meta)
