"""One reader for every user image (dq_edge.runtime.images.read_rgb): every Pillow mode read
correctly or refused, every failure an InputError naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dq_edge.data.image_folder import load_image_folder
from dq_edge.errors import InputError
from dq_edge.reconstruct import load_images
from dq_edge.runtime.images import MAX_PIXELS, load_image, read_rgb
from image_files import bomb_png, bomb_png_64mp, float_tiff, gray16_png, not_an_image, rgb_png, truncated_png


def test_16_bit_grayscale_keeps_its_values(tmp_path):
    path = gray16_png(tmp_path / "g16.png")
    with Image.open(path) as im:
        assert im.mode in ("I;16", "I")
    rgb = np.asarray(read_rgb(path))  # [H, W, 3]
    assert rgb[:, 0].max() == 0 and rgb[:, -1].min() == 255  # black to white, not all white
    assert np.all(np.diff(rgb[0, :, 0].astype(int)) >= 0) and 100 < rgb.mean() < 155
    assert (rgb[..., 0] == rgb[..., 2]).all()
    x = load_image(path, 16)  # [1, 3, 16, 16] in [-1, 1], the --complete path
    assert x.min() == -1.0 and x.max() == 1.0


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK"])
def test_eight_bit_modes_match_their_rgb_conversion(tmp_path, mode):
    base = Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    img = base.convert(mode)
    path = tmp_path / ("x.tiff" if mode == "CMYK" else "x.png")
    img.save(path)
    with Image.open(path) as back:
        expected = np.asarray(back.convert("RGB")) if "A" not in mode else None
    got = np.asarray(read_rgb(path))
    assert got.shape == (8, 8, 3) and got.dtype == np.uint8
    if expected is not None:  # opaque modes: exactly Pillow's own 8-bit conversion
        np.testing.assert_array_equal(got, expected)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red, fully transparent on the left half
    rgba[:, 2:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = np.asarray(read_rgb(tmp_path / "a.png"))
    assert (got[:, :2] == 255).all() and (got[:, 2:] == [200, 0, 0]).all()
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    palette.putpalette([10, 20, 30, 40, 50, 60])
    palette.info["transparency"] = 0  # palette index 0 is transparent (tRNS chunk)
    palette.save(tmp_path / "p.png", transparency=0)
    got = np.asarray(read_rgb(tmp_path / "p.png"))
    assert (got[0, 0] == 255).all() and (got[0, 1] == [40, 50, 60]).all()


@pytest.mark.parametrize(
    "make, expect",
    [
        (bomb_png, f"more than the {MAX_PIXELS:,} pixels"),  # 400 MP: Pillow's own limit trips in open
        (bomb_png_64mp, f"more than the {MAX_PIXELS:,} pixels"),  # 64 MP: below Pillow's, above ours
        (truncated_png, "truncated"),
        (not_an_image, "not a readable image"),
        (float_tiff, "pixel mode F"),
    ],
)
def test_bad_files_are_input_errors_naming_the_file(tmp_path, make, expect):
    path = make(tmp_path / f"{make.__name__}.png")
    with pytest.raises(InputError) as info:
        read_rgb(path)
    assert expect in info.value.message and str(path) in info.value.message and info.value.hint
    with pytest.raises(InputError):
        load_images([path], 16, resize=True)  # reconstruct reads through the same function


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_rgb(tmp_path / "nope.png")


def test_image_folder_reads_16_bit_and_skips_broken_files(tmp_path):
    gray16_png(tmp_path / "a.png")
    rgb_png(tmp_path / "b.png")
    truncated_png(tmp_path / "c.png", size=16)
    bomb_png(tmp_path / "d.png")
    s = load_image_folder(tmp_path)
    assert len(s) == 2 and s.skipped == 2
    assert s.images[0, :, -1].min() == 255 and s.images[0, :, 0].max() == 0  # the ramp, not white
