"""Data loaders: image folders (unreadable files), emoji split logic, IDX parsing, batch order."""

from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from dq_edge.cli.main import main
from dq_edge.data import BatchOrder, load_dataset, to_float, to_uint8
from dq_edge.data import emoji64, fmnist
from dq_edge.data.imageset import ImageSet, load_npz, save_npz
from dq_edge.errors import InputError
from error_helpers import raises_line


def _png(path, color, size=16, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), color).save(path)


def test_image_folder_with_classes_and_unreadable_file(tmp_path):
    _png(tmp_path / "cats" / "a.png", (255, 0, 0))
    _png(tmp_path / "cats" / "deep" / "b.png", (0, 255, 0))
    _png(tmp_path / "dogs" / "c.png", (0, 0, 255, 0), mode="RGBA")  # fully transparent -> white
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not a png at all")
    s = load_dataset(str(tmp_path))
    assert len(s) == 3 and s.skipped == 1
    assert s.class_names == ["cats", "dogs"]
    assert s.labels.tolist() == [0, 0, 1]
    assert s.images[2].min() == 255  # composited on white
    assert s.images.shape == (3, 16, 16, 3)


def test_image_folder_unlabelled_resize_and_errors(tmp_path):
    _png(tmp_path / "a.png", (10, 20, 30), size=20)
    _png(tmp_path / "sub" / "b.png", (10, 20, 30), size=16)
    with raises_line(InputError, "--image-size"):
        load_dataset(str(tmp_path))
    s = load_dataset(str(tmp_path), image_size=8)
    assert s.labels is None and s.images.shape == (2, 8, 8, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with raises_line(InputError, "no images"):
        load_dataset(str(empty))
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.jpg").write_bytes(b"\x00" * 10)
    with raises_line(InputError, "could be read"):
        load_dataset(str(only_bad))


def test_emoji_base_key_groups_variants():
    assert emoji64.base_key("1F385-1F3FB") == emoji64.base_key("1F385")  # skin tone
    assert emoji64.base_key("1F3C3-200D-2642-FE0F") == emoji64.base_key("1F3C3-200D-2640-FE0F") == emoji64.base_key("1F3C3")
    assert emoji64.base_key("1F468-200D-1F373") == emoji64.base_key("1F469-200D-1F373") == emoji64.base_key("1F9D1-200D-1F373")
    assert emoji64.base_key("1F436") != emoji64.base_key("1F431")


FAKE_EMOJI = [
    {"unified": "1F385", "image": "1f385.png", "category": "People", "skin_variations": {
        "1F3FB": {"image": "1f385-1f3fb.png"}, "1F3FF": {"image": "1f385-1f3ff.png"}}},
    {"unified": "1F3C3-200D-2642-FE0F", "image": "m.png", "category": "People"},
    {"unified": "1F3C3-200D-2640-FE0F", "image": "w.png", "category": "People"},
] + [{"unified": f"1F{400 + i:03X}", "image": f"a{i}.png", "category": "Animals"} for i in range(40)]


def test_emoji_split_never_separates_variants_and_is_deterministic():
    recs = emoji64.emoji_records(FAKE_EMOJI)
    assert len(recs) == 45
    splits = emoji64.split_records(recs, test_percent=30)
    assert splits["test"] and splits["train"]
    keys = {s: {r["key"] for r in rs} for s, rs in splits.items()}
    assert not keys["train"] & keys["test"]
    # order-independent: a shuffled emoji.json gives the same split
    again = emoji64.split_records(emoji64.emoji_records(FAKE_EMOJI[::-1]), test_percent=30)
    assert sorted(r["image"] for r in again["test"]) == sorted(r["image"] for r in splits["test"])


def test_emoji_build_splits_from_fake_tarball(tmp_path):
    tgz = tmp_path / emoji64.TARBALL
    with tarfile.open(tgz, "w:gz") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("package/emoji.json", json.dumps(FAKE_EMOJI).encode())
        for r in emoji64.emoji_records(FAKE_EMOJI):
            buf = io.BytesIO()
            Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(buf, "PNG")
            add(emoji64.IMAGE_DIR + r["image"], buf.getvalue())
    splits, missing = emoji64.build_splits(tgz, test_percent=30)
    assert missing == 0
    assert len(splits["train"]) + len(splits["test"]) == 45
    assert splits["train"].class_names == ["Animals", "People"]
    assert splits["train"].images.min() == 255  # transparent -> white
    save_npz(tmp_path / "train.npz", splits["train"])
    back = load_npz(tmp_path / "train.npz", "emoji64", "train")
    assert np.array_equal(back.images, splits["train"].images) and np.array_equal(back.labels, splits["train"].labels)
    tgz.write_bytes(b"garbage")
    with raises_line(InputError, "corrupt"):
        emoji64.build_splits(tgz)


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.astype(np.uint8).tobytes()


def test_fmnist_idx_parsing_and_padding(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(1, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1], np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(imgs)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels))  # uncompressed works too
    s = fmnist.load_idx_split(tmp_path, "test")
    assert s.images.shape == (5, 32, 32, 1)
    assert np.array_equal(s.images[:, 2:30, 2:30, 0], imgs)
    assert s.images[:, :2].max() == 0 and s.images[:, :, 30:].max() == 0
    assert s.labels.tolist() == [0, 9, 3, 3, 1]
    with raises_line(InputError, "payload"):
        fmnist.parse_idx(_idx(imgs)[:-1])
    with raises_line(InputError, "magic"):
        fmnist.parse_idx(b"\x01\x02\x08\x01")
    with raises_line(InputError, "apt-get install"):
        fmnist.load_idx_split(tmp_path, "train")


def test_corrupt_prepared_split_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DQ_EDGE_DATA", str(tmp_path))
    (tmp_path / "emoji64").mkdir()
    (tmp_path / "emoji64" / "train.npz").write_bytes(b"PK\x03\x04 truncated")
    with raises_line(InputError, "dq-edge data prepare emoji64"):
        load_dataset("emoji64", "train")
    with raises_line(InputError, "not prepared"):
        load_dataset("emoji64", "test")


def test_batch_order_resumes_and_shards():
    a = BatchOrder(10, 3, seed=5)
    seq = [a.next_indices().tolist() for _ in range(7)]  # crosses epochs (3 batches per epoch)
    b = BatchOrder(10, 3, seed=5)
    for _ in range(4):
        b.next_indices()
    c = BatchOrder(10, 3, seed=5)
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    assert [c.next_indices().tolist() for _ in range(3)] == seq[4:]
    assert len(set(sum(seq[:3], []))) == 9  # drop-last: 9 distinct of 10 per epoch
    r0, r1 = BatchOrder(10, 2, seed=1, rank=0, world_size=2), BatchOrder(10, 2, seed=1, rank=1, world_size=2)
    i0, i1 = r0.next_indices(), r1.next_indices()
    assert not set(i0) & set(i1)
    with raises_line(InputError, "--batch"):
        c.load_state_dict({**b.state_dict(), "batch_size": 4})
    with raises_line(InputError, "fewer than one global batch"):
        BatchOrder(3, 4)


def test_pixel_conversion_round_trip():
    u = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    x = to_float(u)
    assert x.shape == (2, 3, 4, 4) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(to_uint8(x), u)
    gray = to_float(u[..., :1])
    assert np.array_equal(gray[:, 0], gray[:, 2])


def test_imageset_rejects_empty():
    with raises_line(InputError, "empty"):
        ImageSet(np.zeros((0, 4, 4, 3), np.uint8), None, [], "x", "train")


def test_cli_data_info_and_errors(tmp_path, capsys):
    _png(tmp_path / "a.png", (1, 2, 3))
    (tmp_path / "bad.png").write_bytes(b"x")
    assert main(["data", "info", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_images"] == 1 and out["skipped_unreadable"] == 1
    assert main(["data", "prepare", "nope"]) == 2
    assert "unknown built-in dataset" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_prepare_tells_the_user_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("DQ_EDGE_DATA", str(tmp_path))
    with raises_line(InputError, "apt-get install dataset-fashion-mnist"):
        fmnist.prepare(system_dir=tmp_path / "no-such-dir")
    monkeypatch.setattr(emoji64.shutil, "which", lambda name: None)
    from dq_edge.errors import DQEdgeError

    with raises_line(DQEdgeError, "npm is not installed.*apt-get install npm"):
        emoji64.prepare()
    assert not list(tmp_path.rglob("*.npz"))  # nothing half-prepared
