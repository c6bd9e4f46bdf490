"""dq-edge: dynamic vector quantization image generation from PyTorch to edge GPUs and CPUs.

`from dq_edge import Pipeline` (dq_edge/facade.py) is the short way to images; the package
itself imports nothing heavy until a name is used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
# Bumped when a saved artifact (model folder, export manifest, engine manifest) changes meaning.
FORMAT_VERSION = 1
# Exports and engines have their own version: the graphs' IO changed without the model folder.
# 2: the step graphs take a per-row `step` int64 [B] (continuous batching).
EXPORT_FORMAT_VERSION = 2

_LAZY = {"Pipeline": "dq_edge.facade", "PipelineOutput": "dq_edge.facade"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dq_edge' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
