"""Pydantic pieces shared by the artifact schemas, and the bounds every size field obeys.

The bounds are sanity limits, far above any model dq-edge or the official code trains (the
official ImageNet model: 256 px, 1024 codes, 16x16 fine grid, width 1024, 24 layers, 1000
classes), and far below sizes that would exhaust a machine before a weight is compared.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from dq_edge.graph_io import GRAPH_NAMES, PRECISIONS, GraphDims, GraphSpec, TensorSpec
from dq_edge.tokens import TokenLayout

MAX_IMAGE_SIZE = 4096
MAX_GRID_SIDE = 512  # coarse or fine grid side
MAX_CODES = 1 << 18
MAX_CLASSES = 100_000
MAX_CHANNELS = 16_384
MAX_HEADS = 256
MAX_LAYERS = 256
MAX_LENGTH = MAX_GRID_SIDE**2 + 4  # longest token sequence: every region fine
MAX_VOCAB = MAX_CODES + 2 + MAX_CLASSES + 1
MAX_BATCH = 4096
MAX_LIST = 256  # any list in a manifest (tensors of a graph, flags, ...)


def bounded(lo: int, hi: int) -> Any:
    return Annotated[int, Field(ge=lo, le=hi)]


def ratio(lo: float = 0.0, hi: float = 1.0) -> Any:
    return Annotated[float, Field(ge=lo, le=hi, allow_inf_nan=False)]


Name = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=4096)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def _plain_file_name(name: str) -> str:
    if not name or len(name) > 255 or name in (".", "..") or any(c in name for c in "/\\\x00"):
        raise ValueError(f"{name!r} is not a plain file name inside the artifact's folder (no '/', '..' or absolute path)")
    return name


# a plain file name inside the artifact's folder: no separator, no "..", nothing absolute
FileName = Annotated[str, AfterValidator(_plain_file_name)]
Side = bounded(1, MAX_GRID_SIDE)
Grid = Annotated[list[Side], Field(min_length=2, max_length=2)]
GraphName = Literal[GRAPH_NAMES]
Precision = Literal[PRECISIONS]


class Schema(BaseModel):
    """Strict: no coercion ("3" is not 3, true is not 1) and no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LayoutSchema(Schema):
    n_codes: bounded(1, MAX_CODES)
    coarse_hw: Grid
    fine_hw: Grid
    n_classes: bounded(0, MAX_CLASSES) = 0
    null_class: bool = False

    @model_validator(mode="after")
    def _fine_is_twice_coarse(self) -> "LayoutSchema":
        if [2 * s for s in self.coarse_hw] != list(self.fine_hw):
            raise ValueError(f"fine grid {self.fine_hw} is not twice the coarse grid {self.coarse_hw}")
        return self

    def to_layout(self) -> TokenLayout:
        return TokenLayout.from_dict(self.model_dump())


class DimsSchema(Schema):
    image_size: bounded(1, MAX_IMAGE_SIZE)
    z_channels: bounded(1, MAX_CHANNELS)
    coarse_hw: Grid
    fine_hw: Grid
    router: Literal["feature", "entropy"]
    width: bounded(1, MAX_CHANNELS)
    heads: bounded(1, MAX_HEADS)
    position_layers: bounded(0, MAX_LAYERS)  # 0: a VAE-only export (no token graphs)
    content_layers: bounded(0, MAX_LAYERS)
    max_length: bounded(1, MAX_LENGTH)
    content_vocab: bounded(1, MAX_VOCAB)
    position_vocab: bounded(1, MAX_VOCAB)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "DimsSchema":
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        return self

    def to_dims(self) -> GraphDims:
        return GraphDims.from_dict(self.model_dump())


Dim = Union[bounded(0, 1 << 20), Name]  # a static size or a symbolic one ("batch", "tokens")


class TensorSchema(Schema):
    name: Name
    dtype: Literal["float32", "float16", "int64"]
    dims: Annotated[list[Dim], Field(max_length=8)]


class GraphSpecSchema(Schema):
    name: GraphName
    inputs: Annotated[list[TensorSchema], Field(max_length=MAX_LIST)]
    outputs: Annotated[list[TensorSchema], Field(min_length=1, max_length=MAX_LIST)]
    ranges: dict[Name, Annotated[list[bounded(0, 1 << 20)], Field(min_length=3, max_length=3)]] = {}

    def to_spec(self) -> GraphSpec:
        def tensors(items: list[TensorSchema]) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(t.name, t.dtype, tuple(t.dims)) for t in items)

        ranges = {k: (v[0], v[1], v[2]) for k, v in self.ranges.items()}
        return GraphSpec(self.name, tensors(self.inputs), tensors(self.outputs), ranges)


def layout_dims_disagreement(layout: TokenLayout, dims: GraphDims) -> str | None:
    """Why a token layout cannot drive graphs of these dims (None when it can).

    A layout claiming fewer codes or positions than the graphs' heads would sample from part
    of the vocabulary and decode wrong images without any error."""
    from dq_edge.tokens import SEGMENT_FINE

    expected = {
        "coarse_hw": tuple(layout.coarse_hw),
        "fine_hw": tuple(layout.fine_hw),
        "content_vocab": layout.content_vocab,
        "position_vocab": layout.position_vocab(SEGMENT_FINE),
        "max_length": layout.max_length,
    }
    for key, want in expected.items():
        have = getattr(dims, key)
        have = tuple(have) if isinstance(have, (list, tuple)) else have
        if have != want:
            return f"the token layout needs {key}={want}, the graphs have {have}"
    return None
