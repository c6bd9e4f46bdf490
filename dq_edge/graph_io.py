"""The one description of every exported graph's inputs and outputs.

Export (dynamic axes, names), the manifest, TensorRT optimization profiles, runtime buffer
allocation and the tests all read these specs; nothing else spells out a graph's IO.
Torch-free: the runtime and the engine builder import it on devices without torch.

Graphs (names are the file stems, `<name>.<precision>.onnx`):
- encoder:                   image[B,3,H,W] -> h_coarse[B,Cz,Hc,Wc], h_fine[B,Cz,Hf,Wf]
- dgc:                       h_coarse, h_fine (+ image for the entropy router)
                             -> grain[B,Hc,Wc] int64 (1 = fine), codes[B,Hf,Wf] int64
- decoder:                   codes[B,Hf,Wf] int64 -> image[B,3,H,W]
- transformer_position_step: one token per sample; writes nothing in place: it returns the
                             new K/V rows [B,heads,1,head_dim] that the runtime stores at
                             row `step` of its preallocated caches [B,heads,L,head_dim].
- transformer_content_step:  hidden of the position stack + next position -> content logits.
- transformer_prefill:       T known tokens (2 <= T <= L) -> K/V rows for both stacks, plus the
                             position logits and hidden state of the last known token.

`step` is an int64 tensor of shape [1]: the absolute index of the token being processed.
Inside the graphs it is used only in comparisons / Where and as a Gather index, never as a
slice bound or a shape, so TensorRT never sees a data-dependent shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Union

from dq_edge import precisions

Dim = Union[int, str]  # int = static, str = symbolic ("batch", "tokens", "tokens_minus_1")

PRECISIONS = precisions.PRECISION_NAMES  # re-exported: the one table lives in dq_edge.precisions

FLOAT32 = "float32"
FLOAT16 = "float16"
INT64 = "int64"



@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    dims: tuple[Dim, ...]

    def shape(self, sizes: dict[str, int]) -> tuple[int, ...]:
        """Concrete shape for the symbolic sizes in `sizes` (e.g. {"batch": 4})."""
        return tuple(d if isinstance(d, int) else sizes[d] for d in self.dims)

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # symbolic dim -> (min, opt, max); used for TensorRT profiles and export checks
    ranges: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)

    def profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """min/opt/max shape of every input (TensorRT optimization profile)."""
        lo = {k: v[0] for k, v in self.ranges.items()}
        opt = {k: v[1] for k, v in self.ranges.items()}
        hi = {k: v[2] for k, v in self.ranges.items()}
        return {t.name: (t.shape(lo), t.shape(opt), t.shape(hi)) for t in self.inputs}

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "ranges": {k: list(v) for k, v in self.ranges.items()},
        }


@dataclass(frozen=True)
class GraphDims:
    """Everything about a model that fixes its graphs' IO. Stored in the export manifest."""

    image_size: int
    z_channels: int  # channels of encoder features (before quant_conv)
    coarse_hw: tuple[int, int]
    fine_hw: tuple[int, int]
    router: str  # "feature" | "entropy"
    width: int  # transformer embedding width
    heads: int
    position_layers: int
    content_layers: int
    max_length: int  # L: KV cache rows = longest token sequence
    content_vocab: int
    position_vocab: int  # size of the position head output

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GraphDims":
        d = dict(d)
        d["coarse_hw"] = tuple(d["coarse_hw"])
        d["fine_hw"] = tuple(d["fine_hw"])
        return cls(**d)


def activation_dtype(precision: str) -> str:
    """dtype of features, hidden states and KV caches at graph boundaries.

    Images, logits and token ids stay fp32/int64 in every precision so that the runtime's
    sampling and image IO never depend on the precision.
    """
    return precisions.get(precision).activation


def kv_names(stack: str, layers: int, kind: str) -> list[str]:
    """`kind` is "past" (inputs) or "present" (outputs): e.g. past_key.3 / present_value.3."""
    names = []
    for i in range(layers):
        names += [f"{kind}_key.{i}", f"{kind}_value.{i}"]
    return names


def _kv_specs(d: GraphDims, layers: int, kind: str, rows: Dim, dtype: str) -> tuple[TensorSpec, ...]:
    return tuple(
        TensorSpec(n, dtype, ("batch", d.heads, rows, d.head_dim)) for n in kv_names("", layers, kind)
    )


def graph_specs(d: GraphDims, precision: str, max_batch: int) -> dict[str, GraphSpec]:
    act = activation_dtype(precision)
    hc, wc = d.coarse_hw
    hf, wf = d.fine_hw
    batch = {"batch": (1, max_batch, max_batch)}  # opt = max: the runtime fills batches to the max
    image = TensorSpec("image", FLOAT32, ("batch", 3, d.image_size, d.image_size))
    h_coarse = TensorSpec("h_coarse", act, ("batch", d.z_channels, hc, wc))
    h_fine = TensorSpec("h_fine", act, ("batch", d.z_channels, hf, wf))
    grain = TensorSpec("grain", INT64, ("batch", hc, wc))
    codes = TensorSpec("codes", INT64, ("batch", hf, wf))
    step = TensorSpec("step", INT64, (1,))
    L = d.max_length

    specs = {
        "encoder": GraphSpec("encoder", (image,), (h_coarse, h_fine), batch),
        "dgc": GraphSpec(
            "dgc",
            (h_coarse, h_fine) + ((image,) if d.router == "entropy" else ()),
            (grain, codes),
            batch,
        ),
        "decoder": GraphSpec(
            "decoder", (codes,), (TensorSpec("image", FLOAT32, image.dims),), batch
        ),
        "transformer_position_step": GraphSpec(
            "transformer_position_step",
            (
                TensorSpec("content", INT64, ("batch",)),
                TensorSpec("position", INT64, ("batch",)),
                TensorSpec("segment", INT64, ("batch",)),
                step,
            )
            + _kv_specs(d, d.position_layers, "past", L, act),
            (
                TensorSpec("position_logits", FLOAT32, ("batch", d.position_vocab)),
                TensorSpec("hidden", act, ("batch", d.width)),
            )
            + _kv_specs(d, d.position_layers, "present", 1, act),
            batch,
        ),
        "transformer_content_step": GraphSpec(
            "transformer_content_step",
            (
                TensorSpec("hidden", act, ("batch", d.width)),
                TensorSpec("next_position", INT64, ("batch",)),
                TensorSpec("next_segment", INT64, ("batch",)),
                step,
            )
            + _kv_specs(d, d.content_layers, "past", L, act),
            (TensorSpec("content_logits", FLOAT32, ("batch", d.content_vocab)),)
            + _kv_specs(d, d.content_layers, "present", 1, act),
            batch,
        ),
        "transformer_prefill": GraphSpec(
            "transformer_prefill",
            (
                TensorSpec("content", INT64, ("batch", "tokens")),
                TensorSpec("position", INT64, ("batch", "tokens")),
                TensorSpec("segment", INT64, ("batch", "tokens")),
            ),
            (
                TensorSpec("position_logits", FLOAT32, ("batch", d.position_vocab)),
                TensorSpec("hidden", act, ("batch", d.width)),
            )
            # position stack: rows 0..T-1; content stack: rows 0..T-2 (row t needs position[t+1])
            + tuple(
                TensorSpec(f"position_{t.name}", t.dtype, t.dims)
                for t in _kv_specs(d, d.position_layers, "present", "tokens", act)
            )
            + tuple(
                TensorSpec(f"content_{t.name}", t.dtype, t.dims)
                for t in _kv_specs(d, d.content_layers, "present", "tokens_minus_1", act)
            ),
            {**batch, "tokens": (2, min(L, 64), L), "tokens_minus_1": (1, min(L, 64) - 1, L - 1)},
        ),
    }
    return specs


GRAPH_NAMES = (
    "encoder",
    "dgc",
    "decoder",
    "transformer_position_step",
    "transformer_content_step",
    "transformer_prefill",
)
