"""Cheap, import-safe probes for TensorRT / CUDA availability (no torch, no side effects)."""

from __future__ import annotations

import importlib.util


def tensorrt_version() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return None
    import tensorrt  # noqa: PLC0415

    return str(tensorrt.__version__)


def cuda_device_count() -> int:
    """Number of CUDA devices via cuda-python; 0 when cuda-python, the driver or a GPU is missing."""
    if importlib.util.find_spec("cuda") is None:
        return 0
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        err, count = cudart.cudaGetDeviceCount()
    except Exception:  # noqa: BLE001 - any failure means "no usable device"
        return 0
    return int(count) if int(err) == 0 else 0


def gpu_unavailable_reason() -> str | None:
    """None when TensorRT and a CUDA device are usable, else a one-line reason."""
    if tensorrt_version() is None:
        return "TensorRT is not installed (pip install tensorrt, or JetPack 6 on Jetson)"
    if cuda_device_count() == 0:
        return "no CUDA device visible (cudaGetDeviceCount reports none)"
    return None
