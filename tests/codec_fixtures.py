"""Shared setup of the codec tests: the tiny class-conditional model (torch) and its fp32
export (ONNX Runtime), opened once per pytest process, plus images of the model's size."""

from __future__ import annotations

import functools

import numpy as np

import export_helpers
import runtime_fixtures


@functools.lru_cache(maxsize=None)
def torch_codec():
    from dq_edge.codec import open_model

    return open_model(runtime_fixtures.class_model_folder())


@functools.lru_cache(maxsize=None)
def ort_codec():
    from dq_edge.codec import open_model

    return open_model(runtime_fixtures.class_export(), backend="ort-cpu", threads=1)


@functools.lru_cache(maxsize=None)
def image_files():
    """8 PNG files of the tiny model's size (gradients + rectangles: both grains occur)."""
    return sorted(export_helpers.write_images(export_helpers.workdir() / "codec_images", 8, 16, seed=5).glob("*.png"))


def pixels() -> np.ndarray:
    from dq_edge.reconstruct import load_images

    return load_images(image_files(), 16, resize=False)
