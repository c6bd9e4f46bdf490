"""ONNX export: graphs, precisions (fp32/fp16/int8), manifest, TensorRT-readiness checks.

Only `dq_edge.export.manifest` is torch-free and imported by the runtime; the other modules
(graphs, onnx_export, fp16, int8, checks) need torch and/or onnx and are imported on demand.
This file must not import torch.
"""

from __future__ import annotations

from dq_edge.export.manifest import ExportInfo, load_export, read_manifest

__all__ = ["ExportInfo", "load_export", "read_manifest"]
