"""The device layer lives in `dq_edge.device` (the ONNX Runtime backend uses it too)."""

from dq_edge.device import (  # noqa: F401 - re-exported for the engines package
    CudaDevice,
    Device,
    HostBuffer,
    PycudaDevice,
    import_cudart,
    open_device,
)
