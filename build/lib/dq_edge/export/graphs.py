"""Torch modules to export, one per graph, with exactly the IO of dq_edge.graph_io.

The VAE graphs wrap `vae.features`, `vae.dgc` and `vae.decode_codes`; the transformer graphs
are the KV-step modules of dq_edge.models.kv_steps (their forward signatures already match
the specs). `graph_dims` measures the feature shapes by running the encoder once, so the
manifest can never disagree with what the exported graphs produce.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dq_edge.errors import ConfigError
from dq_edge.graph_io import GraphDims, GraphSpec
from dq_edge.tokens import TokenLayout

VAE_GRAPHS = ("encoder", "dgc", "decoder")
TRANSFORMER_GRAPHS = ("transformer_position_step", "transformer_content_step", "transformer_prefill")


class EncoderGraph(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.features(image)


class DgcGraph(nn.Module):
    """Router + merge + quant_conv + nearest code (the entropy router also reads the image)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, h_coarse: torch.Tensor, h_fine: torch.Tensor, image: torch.Tensor | None = None):
        grain, codes = self.vae.dgc(h_coarse, h_fine, image)
        return grain.to(torch.int64), codes.to(torch.int64)


class DecoderGraph(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.vae.decode_codes(codes)


@dataclass
class ExportModels:
    """What an export reads from a model folder."""

    vae: nn.Module
    transformer: nn.Module | None

    @property
    def layout(self) -> TokenLayout | None:
        return None if self.transformer is None else self.transformer.layout

    @property
    def router(self) -> str:
        return self.vae.config.router

    @property
    def image_size(self) -> int:
        return int(self.vae.config.image_size)


def load_models(model_folder: str | Path) -> ExportModels:
    """Load the VAE (and the transformer when the folder has one) in eval mode, float32."""
    from dq_edge.models.folder import read_config
    from dq_edge.models.vae import load_vae

    cfg = read_config(model_folder)
    vae = load_vae(model_folder).eval().float()
    tr = None
    if cfg.get("transformer"):
        from dq_edge.models.transformer import load_transformer

        tr = load_transformer(model_folder).eval().float()
    return ExportModels(vae, tr)


@torch.no_grad()
def graph_dims(models: ExportModels) -> GraphDims:
    """GraphDims for a model; feature shapes measured by running the encoder on one image."""
    size = models.image_size
    h_coarse, h_fine = models.vae.features(torch.zeros(1, 3, size, size))
    if models.transformer is not None:
        from dq_edge.models.kv_steps import transformer_dims

        tdims = transformer_dims(models.transformer)
        if tuple(models.layout.fine_hw) != tuple(h_fine.shape[2:]):
            raise ConfigError(
                f"the transformer's token grid {models.layout.fine_hw} differs from the VAE's fine grid {tuple(h_fine.shape[2:])}",
                "re-create the model folder: its two stages do not belong together",
            )
    else:  # VAE-only folder: transformer fields are unused placeholders (no token graphs)
        tdims = dict(width=1, heads=1, position_layers=0, content_layers=0, max_length=1, content_vocab=1, position_vocab=1)
    return GraphDims(
        image_size=size,
        z_channels=int(h_coarse.shape[1]),
        coarse_hw=(int(h_coarse.shape[2]), int(h_coarse.shape[3])),
        fine_hw=(int(h_fine.shape[2]), int(h_fine.shape[3])),
        router=models.router,
        **tdims,
    )


def graph_modules(models: ExportModels) -> dict[str, nn.Module]:
    """Graph name -> module whose forward takes the spec's inputs in order."""
    mods: dict[str, nn.Module] = {
        "encoder": EncoderGraph(models.vae),
        "dgc": DgcGraph(models.vae),
        "decoder": DecoderGraph(models.vae),
    }
    if models.transformer is not None:
        from dq_edge.models.kv_steps import step_modules

        mods.update(step_modules(models.transformer))
    return {k: m.eval() for k, m in mods.items()}


_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64}


def example_inputs(spec: GraphSpec, dims: GraphDims, sizes: dict[str, int], step: int = 1) -> tuple[torch.Tensor, ...]:
    """Valid example inputs for tracing: images in [-1,1], ids 0 (valid in every table),
    `step` a mid-sequence index so no branch of the cache mask is constant-folded away."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for t in spec.inputs:
        shape = t.shape(sizes)
        if t.dtype == "int64":
            out.append(torch.full(shape, step, dtype=torch.int64) if t.name == "step" else torch.zeros(shape, dtype=torch.int64))
        else:
            out.append((torch.rand(shape, generator=gen) * 2 - 1).to(_TORCH_DTYPES[t.dtype]))
    return tuple(out)
