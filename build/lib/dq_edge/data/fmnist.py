"""Built-in `fmnist`: Fashion-MNIST from Debian's `dataset-fashion-mnist` (IDX files), padded 28 -> 32."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from dq_edge.data.cache import dataset_dir
from dq_edge.data.imageset import ImageSet, save_npz
from dq_edge.errors import InputError

NAME = "fmnist"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
APT_HINT = "run `sudo apt-get install dataset-fashion-mnist`, then `dq-edge data prepare fmnist`"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_UBYTE = 0x08
PAD = 2  # 28 + 2 * 2 = 32: a size the dual-grain encoder can halve down to its coarse grid


def _open(path: Path) -> bytes:
    for cand in (path, path.with_name(path.name + ".gz")):
        if cand.is_file():
            return gzip.decompress(cand.read_bytes()) if cand.suffix == ".gz" else cand.read_bytes()
    raise InputError(f"Fashion-MNIST file {path}[.gz] not found", APT_HINT)


def parse_idx(data: bytes, source: str = "IDX") -> np.ndarray:
    """IDX format: 2 zero bytes, type code (0x08 = ubyte), ndim, big-endian int32 dims, payload."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InputError(f"{source} is not an IDX file (bad magic)", APT_HINT)
    if data[2] != IDX_UBYTE:
        raise InputError(f"{source}: IDX type 0x{data[2]:02x} unsupported (expected unsigned byte)", APT_HINT)
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(f"{source}: truncated IDX header", APT_HINT)
    dims = struct.unpack(f">{ndim}i", data[4:header])
    n = int(np.prod(dims)) if dims else 0
    if len(data) - header != n:
        raise InputError(f"{source}: IDX payload has {len(data) - header} bytes, dims {dims} need {n}", APT_HINT)
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def load_idx_split(folder: Path, split: str) -> ImageSet:
    img_name, lbl_name = FILES[split]
    images = parse_idx(_open(folder / img_name), img_name)
    labels = parse_idx(_open(folder / lbl_name), lbl_name)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(f"Fashion-MNIST {split}: images {images.shape} do not match labels {labels.shape}", APT_HINT)
    if labels.size and int(labels.max()) >= len(CLASS_NAMES):
        raise InputError(f"Fashion-MNIST {split}: label {int(labels.max())} out of range", APT_HINT)
    padded = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD)))[..., None]  # [N, 32, 32, 1], background 0
    meta = {"source": "Debian dataset-fashion-mnist", "preprocessing": f"zero-padded {PAD} px per side to 32x32"}
    return ImageSet(padded, labels.astype(np.int64), list(CLASS_NAMES), NAME, split, 0, meta)


def prepare(force: bool = False, system_dir: Path = SYSTEM_DIR) -> dict[str, Path]:
    out = dataset_dir(NAME)
    paths = {s: out / f"{s}.npz" for s in FILES}
    if not force and all(p.is_file() for p in paths.values()):
        return paths
    if not system_dir.is_dir():
        raise InputError(f"Fashion-MNIST is not installed ({system_dir} missing)", APT_HINT)
    for s, p in paths.items():
        save_npz(p, load_idx_split(system_dir, s))
    return paths
