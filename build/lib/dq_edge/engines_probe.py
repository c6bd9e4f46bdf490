"""Cheap, import-safe probes for TensorRT / CUDA availability (no torch, no side effects).

A device layer is cuda-python (preferred) or pycuda (JetPack images that ship only pycuda);
a CUDA error is reported as itself (e.g. `35 cudaErrorInsufficientDriver`: a driver older than
the cuda-python major), never folded into "no device".
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


def tensorrt_version() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return None
    import tensorrt  # noqa: PLC0415

    return str(tensorrt.__version__)


@dataclass(frozen=True)
class CudaProbe:
    layer: str | None  # "cuda-python" | "pycuda" | None (neither installed)
    devices: int
    error: str | None = None  # the CUDA error, as itself, when the probe call failed


def _probe_cuda_python() -> CudaProbe:
    from dq_edge.device import describe_cuda_error, import_cudart  # noqa: PLC0415

    rt = import_cudart()
    err, count = rt.cudaGetDeviceCount()
    if int(err) != 0:
        return CudaProbe("cuda-python", 0, describe_cuda_error(rt, err))
    return CudaProbe("cuda-python", int(count))


def _probe_pycuda() -> CudaProbe:
    import pycuda.driver as drv  # noqa: PLC0415

    try:
        drv.init()
        return CudaProbe("pycuda", int(drv.Device.count()))
    except drv.Error as exc:  # pycuda's errors carry the driver's name for the code
        return CudaProbe("pycuda", 0, str(exc))


def probe_cuda() -> CudaProbe:
    from dq_edge.device import cuda_python_installed  # noqa: PLC0415

    if cuda_python_installed():
        return _probe_cuda_python()
    if importlib.util.find_spec("pycuda") is not None:
        return _probe_pycuda()
    return CudaProbe(None, 0)


def cuda_device_count() -> int:
    """Number of CUDA devices through cuda-python or pycuda; 0 when none is usable."""
    return probe_cuda().devices


def cuda_unavailable_reason() -> str | None:
    """None when a device layer sees a CUDA device, else one line naming what is wrong."""
    probe = probe_cuda()
    if probe.layer is None:
        return "neither cuda-python nor pycuda is installed (pip install 'dq-edge[cuda12]', JetPack 6: cuda-python 12.6)"
    if probe.error is not None:
        return f"CUDA error through {probe.layer}: {probe.error}"
    if probe.devices == 0:
        return f"no CUDA device visible ({probe.layer} reports 0 devices)"
    return None


def gpu_unavailable_reason() -> str | None:
    """None when TensorRT and a CUDA device are usable, else a one-line reason."""
    if tensorrt_version() is None:
        return "TensorRT is not installed (pip install 'dq-edge[cuda12]' or '[cuda13]', or JetPack 6 on Jetson)"
    return cuda_unavailable_reason()
