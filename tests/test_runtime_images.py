"""Image IO and summary.json helpers of the torch-free runtime."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dq_edge.errors import InputError
from dq_edge.runtime.images import load_image, make_grid, save_png, to_uint8
from dq_edge.runtime.summary import build_summary, stage_stats
from dq_edge.runtime.timing import StageTimes


def test_to_uint8_maps_range_and_clamps():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 3.0], np.float32).reshape(1, 1, 1, 5).repeat(3, axis=1)
    out = to_uint8(x)
    assert out.shape == (1, 1, 5, 3) and out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_grid_places_every_image():
    imgs = np.stack([np.full((4, 4, 3), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = make_grid(imgs, pad=1)  # 3 columns x 2 rows
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    assert grid[1, 1, 0] == 10 and grid[1, 6, 0] == 20 and grid[6, 1, 0] == 40 and grid[6, 6, 0] == 50
    assert grid[6, 11, 0] == 255  # the empty sixth cell stays background


def test_png_round_trip_and_size_check(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    save_png(tmp_path / "a.png", img)
    back = load_image(tmp_path / "a.png", 8)
    assert back.shape == (1, 3, 8, 8) and back.dtype == np.float32
    np.testing.assert_array_equal(to_uint8(back)[0], img)
    with pytest.raises(InputError, match="expects 16x16"):
        load_image(tmp_path / "a.png", 16)
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "missing.png", 8)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="not a readable image"):
        load_image(tmp_path / "bad.png", 8)


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    np.testing.assert_allclose(load_image(tmp_path / "t.png", 4), 1.0)


def _stage_times(seconds: dict[str, list[float]]) -> StageTimes:
    times = StageTimes(seconds)
    for stage, values in seconds.items():
        for value in values:
            times.add(stage, value)
    return times.snapshot()


def test_summary_fields():
    grains = np.array([[[1, 0], [0, 0]], [[1, 1], [1, 1]]])
    summary = build_summary(
        backend="ort-cpu", backend_reason="test", precision="fp32", engine="x",
        grains=grains, lengths=np.array([11, 20]), n_codes=np.array([7, 16]),
        stage_times=_stage_times({"position_step": [0.001, 0.003], "decoder": []}), wall_seconds=0.5, batch=2,
        sampling={"seed": 0},
    )
    assert summary["fine_ratio_per_image"] == [0.25, 1.0]
    assert summary["images_per_second"] == 4.0
    assert summary["stages"]["position_step"]["calls"] == 2 and summary["stages"]["position_step"]["first_ms"] == 1.0
    assert "decoder" not in summary["stages"]
    assert summary["peak_rss_mib"] > 0 and summary["versions"]["onnxruntime"]
    stats = stage_stats(_stage_times({"a": [0.010, 0.002, 0.002, 0.002]}))["a"]
    assert stats["mean_ms"] == 4.0 and stats["p50_ms"] == 2.0 and stats["first_ms"] == 10.0
