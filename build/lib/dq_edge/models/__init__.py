"""Pipeline stage 1+2 reference models in torch.

Public names are imported lazily (name -> submodule) so `import dq_edge.models.folder` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # stage 1 (DQ-VAE)
    "load_vae": "vae",
    "build_vae": "vae",
    "save_vae": "vae",
    "DQVAE": "vae",
    "VAEConfig": "vae_config",
    # stage 2 (DQ-Transformer)
    "load_transformer": "transformer",
    "build_transformer": "transformer",
    "save_transformer": "transformer",
    "TransformerConfig": "transformer_config",
    # generation with the torch reference backend
    "generate": "torch_generate",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dq_edge.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dq_edge.models.{_LAZY[name]}"), name)
