"""ONNX Runtime as an optional dependency: the CPU and the GPU wheel provide the same module.

`onnxruntime` (CPU) and `onnxruntime-gpu` must never both be installed (they overwrite each
other's files), so neither is a base dependency: users pick the extra `dq-edge[cpu]` or
`dq-edge[cuda]`. Torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

from dq_edge.errors import BackendUnavailableError


def import_onnxruntime() -> Any:
    try:
        return importlib.import_module("onnxruntime")
    except ImportError as exc:
        raise BackendUnavailableError(
            "ONNX Runtime is not installed",
            "install one flavour: pip install 'dq-edge[cpu]' (onnxruntime) or 'dq-edge[cuda]' (onnxruntime-gpu), never both",
        ) from exc
