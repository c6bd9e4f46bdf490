"""The schema of each artifact file: export manifest, engine manifest, model config.json.

Every key is named (unknown keys are refused), every size is bounded (schema_parts), and what
two parts of one file say about the same fact must agree (the token layout and the graphs'
vocabularies). Free-form sections (export options, training summary, data description) are
plain JSON objects, still bounded in size and depth by the reader. Torch-free.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, model_validator

from dq_edge.artifact.schema_parts import (
    MAX_BATCH,
    MAX_CHANNELS,
    MAX_CODES,
    MAX_IMAGE_SIZE,
    MAX_LAYERS,
    MAX_LENGTH,
    MAX_LIST,
    MAX_VOCAB,
    DimsSchema,
    FileName,
    GraphName,
    GraphSpecSchema,
    LayoutSchema,
    Name,
    Precision,
    Schema,
    Sha256,
    Text,
    bounded,
    layout_dims_disagreement,
    ratio,
)

JsonObject = dict[str, Any]


def _check_layout(layout: Optional[LayoutSchema], dims: DimsSchema) -> None:
    if layout is not None:
        why = layout_dims_disagreement(layout.to_layout(), dims.to_dims())
        if why is not None:
            raise ValueError(why)


# ----------------------------------------------------------------------------- export folder
class ExportGraphSchema(Schema):
    file: FileName
    sha256: Sha256
    spec: GraphSpecSchema
    quantized: bool
    quantized_nodes: Optional[bounded(0, 1 << 24)] = None  # int8 graphs
    calibration_feeds: Optional[bounded(0, 1 << 24)] = None
    # weight-only graphs (w8 / w4: MatMulNBits)
    bits: Optional[Literal[4, 8]] = None
    block_size: Optional[bounded(16, 4096)] = None
    heads_quantized: Optional[bool] = None


class ExportWeightsSchema(Schema):
    """The weights file the graphs of one precision share (ONNX external data, stored once)."""

    file: FileName
    sha256: Sha256
    graphs: Annotated[list[GraphName], Field(min_length=1, max_length=MAX_LIST)]


class ExportPrecisionSchema(Schema):
    graphs: Annotated[dict[GraphName, ExportGraphSchema], Field(min_length=1)]
    weights: Optional[ExportWeightsSchema] = None

    @model_validator(mode="after")
    def _weights_users(self) -> "ExportPrecisionSchema":
        if self.weights is not None:
            unknown = sorted(set(self.weights.graphs) - set(self.graphs))
            if unknown:
                raise ValueError(f"weights.graphs names graphs this precision lacks: {', '.join(unknown)}")
            if self.weights.file in {g.file for g in self.graphs.values()}:
                raise ValueError(f"weights.file {self.weights.file} is also a graph file")
        return self


class ExportSourceSchema(Schema):
    model_hash: Sha256
    model_path: Text


class ExportManifestSchema(Schema):
    format: Literal["dq-edge-export"]
    format_version: int
    dq_edge_version: Name
    source: ExportSourceSchema
    dims: DimsSchema
    tokens: Optional[LayoutSchema]
    max_batch: bounded(1, MAX_BATCH)
    max_length: bounded(1, MAX_LENGTH)
    opset: bounded(7, 99)
    options: JsonObject
    calibration: Optional[JsonObject]
    precisions: Annotated[dict[Precision, ExportPrecisionSchema], Field(min_length=1)]

    @model_validator(mode="after")
    def _consistent(self) -> "ExportManifestSchema":
        if self.max_length != self.dims.max_length:
            raise ValueError(f"max_length {self.max_length} differs from dims.max_length {self.dims.max_length}")
        _check_layout(self.tokens, self.dims)
        for precision, entry in self.precisions.items():
            for graph, g in entry.graphs.items():
                if g.spec.name != graph:
                    raise ValueError(f"precisions.{precision}.graphs.{graph} describes graph {g.spec.name!r}")
        return self


# ----------------------------------------------------------------------------- engine folder
class TargetSchema(Schema):
    tensorrt_version: Annotated[str, Field(pattern=r"^\d{1,4}(\.\d{1,6}){1,3}$")]
    gpu_name: Name
    compute_capability: Annotated[list[bounded(0, 99)], Field(min_length=2, max_length=2)]


class NetworkSchema(Schema):
    strongly_typed: bool
    builder_flags: Annotated[list[Name], Field(max_length=MAX_LIST)]


class BuildSchema(Schema):
    workspace_gib: ratio(0.0, 4096.0)
    opt_level: bounded(0, 5)
    timing_cache: Optional[Text]


class EngineExportSchema(Schema):
    folder: Text
    manifest_sha256: Sha256


Shape = Annotated[list[bounded(0, 1 << 20)], Field(max_length=8)]


class EngineEntrySchema(Schema):
    file: FileName
    sha256: Sha256
    onnx_file: FileName
    onnx_sha256: Sha256
    profile: dict[Name, dict[Literal["min", "opt", "max"], Shape]]
    io: GraphSpecSchema
    trtexec: Text


class EngineManifestSchema(Schema):
    format: Literal["dq-edge-engines"]
    format_version: int
    dq_edge_version: Name
    target: TargetSchema
    precision: Precision
    max_batch: bounded(1, MAX_BATCH)
    network: NetworkSchema
    build: BuildSchema
    export: EngineExportSchema
    dims: DimsSchema
    layout: Optional[LayoutSchema]
    engines: Annotated[dict[GraphName, EngineEntrySchema], Field(min_length=1)]

    @model_validator(mode="after")
    def _consistent(self) -> "EngineManifestSchema":
        _check_layout(self.layout, self.dims)
        return self


# ----------------------------------------------------------------------------- model folder
class VaeSectionSchema(Schema):
    """Mirrors dq_edge.models.vae_config.VAEConfig field for field (a test keeps them equal)."""

    image_size: bounded(4, MAX_IMAGE_SIZE)
    in_channels: bounded(1, 16)
    out_channels: bounded(1, 16)
    norm_groups: bounded(1, 1024)
    ch: bounded(1, MAX_CHANNELS)
    ch_mult: Annotated[list[bounded(1, 64)], Field(min_length=2, max_length=8)]
    num_res_blocks: bounded(0, 16)
    attn_resolutions: Annotated[list[bounded(1, MAX_IMAGE_SIZE)], Field(max_length=16)]
    z_channels: bounded(1, MAX_CHANNELS)
    resamp_with_conv: bool
    dropout: ratio()
    grains: bounded(2, 3)
    router: Literal["feature", "entropy"]
    router_norm: Annotated[str, Field(pattern=r"^(none|group-\d{1,4})$")]
    router_gate: Literal["2layer-fc-SiLu", "1layer-fc"]
    update_router: bool
    target_fine_ratio: ratio()
    budget_gamma: ratio(0.0, 1e6)
    budget_symmetric: bool
    entropy_bins: Literal["current", "legacy"]
    entropy_sigma: ratio(0.0, 1e3)
    n_codes: bounded(1, MAX_CODES)
    embed_dim: bounded(1, MAX_CHANNELS)
    commitment_beta: ratio(0.0, 1e3)
    ema_decay: ratio()
    ema_eps: ratio(0.0, 1.0)
    restart_unused_codes: bool
    dec_ch: bounded(1, MAX_CHANNELS)
    dec_ch_mult: Annotated[list[bounded(1, 64)], Field(min_length=1, max_length=8)]
    dec_num_res_blocks: bounded(0, 16)
    dec_attn_resolutions: Annotated[list[bounded(1, MAX_IMAGE_SIZE)], Field(max_length=16)]
    position_type: Literal["fourier+learned", "fourier", "learned"]
    notes: JsonObject = {}
    coarse_hw: Optional[list[Any]] = None  # informative copies; recomputed on load
    fine_hw: Optional[list[Any]] = None

    @model_validator(mode="after")
    def _widths(self) -> "VaeSectionSchema":
        widest = max(self.ch * max(self.ch_mult), self.dec_ch * max(self.dec_ch_mult))
        if widest > MAX_CHANNELS:
            raise ValueError(f"the widest layer has {widest} channels, more than {MAX_CHANNELS}")
        return self


class TransformerSectionSchema(Schema):
    """Mirrors dq_edge.models.transformer_config.TransformerConfig.to_dict (a test keeps them equal)."""

    model_type: Literal["dq-transformer"]
    width: bounded(1, MAX_CHANNELS)
    heads: bounded(1, 256)
    position_layers: bounded(1, MAX_LAYERS)
    content_layers: bounded(1, MAX_LAYERS)
    block_size: bounded(1, MAX_LENGTH)
    dropout: ratio()
    tokens: LayoutSchema
    content_vocab: Optional[bounded(1, MAX_VOCAB)] = None  # derived, stored so the file explains itself
    coarse_position_vocab: Optional[bounded(1, MAX_VOCAB)] = None
    fine_position_vocab: Optional[bounded(1, MAX_VOCAB)] = None
    notes: JsonObject = {}  # provenance of imported checkpoints


class ModelConfigSchema(Schema):
    format: Literal["dq-edge-model"]
    format_version: int
    dq_edge_version: Name
    vae: Optional[VaeSectionSchema] = None
    transformer: Optional[TransformerSectionSchema] = None
    tokens: Optional[LayoutSchema] = None
    data: Optional[JsonObject] = None
    training: Optional[JsonObject] = None
    source: Optional[JsonObject] = None
