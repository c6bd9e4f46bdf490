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
                             row `step` of its preallocated caches [B,heads,R,head_dim].
                             R ("cache_rows") is dynamic: the runtime binds the smallest
                             length bucket holding every row's prefix (see `cache_buckets`), so
                             a step's attention costs O(prefix), not O(L).
- transformer_content_step:  hidden of the position stack + next position -> content logits.
- transformer_prefill:       T known tokens (2 <= T <= L) -> K/V rows for both stacks, plus the
                             position logits and hidden state of the last known token.

`step` is an int64 tensor of shape [B]: per sample, the absolute index of the token being
processed (rows of one batch may be at different steps: continuous batching refills a finished
row with a new image at step 0). Inside the graphs it is used only in comparisons / Where and
as a Gather index, never as a slice bound or a shape, so TensorRT never sees a data-dependent
shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Union

import numpy as np

from dq_edge import precisions
from dq_edge.errors import InputError

Dim = Union[int, str]  # int = static, str = symbolic ("batch", "tokens", "tokens_minus_1", "cache_rows")
CACHE_ROWS = "cache_rows"  # the step graphs' past caches' length axis (a bucket of rows)

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
    step = TensorSpec("step", INT64, ("batch",))  # per-row token index (continuous batching)
    L = d.max_length
    # cache rows: any bucket 1..L (opt = L: TensorRT tunes for the longest, the worst case)
    step_ranges = {**batch, CACHE_ROWS: (1, L, L)}

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
            + _kv_specs(d, d.position_layers, "past", CACHE_ROWS, act),
            (
                TensorSpec("position_logits", FLOAT32, ("batch", d.position_vocab)),
                TensorSpec("hidden", act, ("batch", d.width)),
            )
            + _kv_specs(d, d.position_layers, "present", 1, act),
            step_ranges,
        ),
        "transformer_content_step": GraphSpec(
            "transformer_content_step",
            (
                TensorSpec("hidden", act, ("batch", d.width)),
                TensorSpec("next_position", INT64, ("batch",)),
                TensorSpec("next_segment", INT64, ("batch",)),
                step,
            )
            + _kv_specs(d, d.content_layers, "past", CACHE_ROWS, act),
            (TensorSpec("content_logits", FLOAT32, ("batch", d.content_vocab)),)
            + _kv_specs(d, d.content_layers, "present", 1, act),
            step_ranges,
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


# ---------------------------------------------------------------------------------------------
# The KV protocol: the one statement of how the step graphs' caches are fed back. Every backend
# (ONNX Runtime, TensorRT, torch) and the export harness read it; none spells tensor names.
#
# - Each stack ("position", "content") has 2 * layers caches [B, heads, L, head_dim]: the step
#   graph's input `past_{key,value}.i` is cache i, its output `present_{key,value}.i`
#   [B, heads, 1, head_dim] is the new row; sample b's row is stored at row `step[b]` of its
#   cache (rows < step[b] are its prefix; rows >= step[b] are masked by the graph and must hold
#   finite values: zeros after `begin`, or a previous image's rows after a refill).
# - Prefill of T known tokens fills rows 0..T-1 of the position caches and rows 0..T-2 of the
#   content caches (content row t needs position[t+1], unknown for the last token); its outputs
#   are `<stack>_present_{key,value}.i` [B, heads, rows, head_dim].
# - `hidden` leaves the position step (and prefill) and enters the content step: it stays on
#   the device. The host reads only the logits (and the image graphs' results).
# ---------------------------------------------------------------------------------------------
STACKS = ("position", "content")
STEP_GRAPH_OF = {"position": "transformer_position_step", "content": "transformer_content_step"}
STACK_OF = {graph: stack for stack, graph in STEP_GRAPH_OF.items()}
PREFILL_GRAPH = "transformer_prefill"
HIDDEN = "hidden"  # position step / prefill output -> content step input, device-resident

# (graph, output) pairs the host reads; every other output stays where the device wrote it
HOST_OUTPUTS = frozenset({
    ("transformer_position_step", "position_logits"),
    ("transformer_content_step", "content_logits"),
    (PREFILL_GRAPH, "position_logits"),
    ("dgc", "grain"),
    ("dgc", "codes"),
    ("decoder", "image"),
})
LOGITS_OF = {"position": "position_logits", "content": "content_logits"}


@dataclass(frozen=True)
class KvPair:
    """One cache: the step graph's `past` input, the `present` row it returns, prefill's output."""

    stack: str  # "position" | "content"
    layer: int
    kind: str  # "key" | "value"

    @property
    def past(self) -> str:
        return f"past_{self.kind}.{self.layer}"

    @property
    def present(self) -> str:
        return f"present_{self.kind}.{self.layer}"

    @property
    def prefill_present(self) -> str:
        return f"{self.stack}_{self.present}"

    @property
    def cache(self) -> str:
        """Stable name of the cache buffer (unique across both stacks)."""
        return f"cache.{self.stack}.{self.kind}.{self.layer}"


def stack_layers(d: GraphDims, stack: str) -> int:
    return d.position_layers if stack == "position" else d.content_layers


def kv_pairs(d: GraphDims, stack: str) -> tuple[KvPair, ...]:
    """The caches of one stack in graph IO order (key.0, value.0, key.1, ...)."""
    return tuple(KvPair(stack, i, kind) for i in range(stack_layers(d, stack)) for kind in ("key", "value"))


def all_kv_pairs(d: GraphDims) -> tuple[KvPair, ...]:
    return kv_pairs(d, "position") + kv_pairs(d, "content")


def prefill_rows(stack: str, tokens: int) -> int:
    """Cache rows prefill of `tokens` known tokens fills in `stack` (from row 0)."""
    return tokens if stack == "position" else tokens - 1


def cache_shape(d: GraphDims, batch: int, rows: int | None = None) -> tuple[int, int, int, int]:
    return (batch, d.heads, rows or d.max_length, d.head_dim)  # [B, heads, R, head_dim]


def step_sizes(batch: int, cache_rows: int) -> dict[str, int]:
    """The symbolic sizes of a step graph's IO."""
    return {"batch": batch, CACHE_ROWS: cache_rows}


def cache_buckets(max_length: int, smallest: int = 64) -> tuple[int, ...]:
    """Cache lengths the runtime keeps one contiguous buffer of: smallest, 2*smallest, ...
    (each at most L/2), then L. The sum stays below 2L: at most twice one full cache."""
    sizes, rows = [], max(1, smallest)
    while 2 * rows <= max_length:
        sizes.append(rows)
        rows *= 2
    return tuple(sizes) + (max_length,)


def bucket_for(rows: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket holding `rows` cache rows."""
    return next(b for b in buckets if b >= rows)


def step_rows(step, batch: int):
    """int64 [batch] per-row step indices from an int (every row at the same step) or [batch]."""
    rows = np.asarray(step, dtype=np.int64).reshape(-1)
    return np.full(batch, int(rows[0]), np.int64) if rows.size == 1 else rows


def check_steps(step, batch: int, max_length: int) -> np.ndarray:
    """Validated per-row steps int64 [batch] (an int means every row at that step)."""
    steps = step_rows(step, batch)
    if steps.shape != (batch,):
        raise InputError(f"{steps.size} step indices for a batch of {batch}", "pass one step per row, or one int")
    if steps.min() < 0 or steps.max() >= max_length:
        raise InputError(f"step {int(steps.min())}..{int(steps.max())} is outside the KV cache (0..{max_length - 1})")
    return steps


def store_rows(cache, rows, start) -> None:
    """Write new K/V rows [B, heads, r, D] into a [B, heads, L, D] cache, in place: at cache rows
    start..start+r-1 when `start` is an int, or (r = 1) sample b's row at row start[b] when
    `start` is a [B] index array. Works on numpy arrays and torch tensors alike."""
    if isinstance(start, int) or getattr(start, "ndim", 1) == 0:
        start = int(start)
        cache[:, :, start : start + rows.shape[2]] = rows
        return
    index = np.asarray(start, dtype=np.int64).reshape(-1)
    if (index == index[0]).all():  # all rows at one step: one slice store
        cache[:, :, int(index[0]) : int(index[0]) + 1] = rows
        return
    # [B, heads, D] rows, one per sample (torch tensors take numpy index arrays too)
    cache[np.arange(len(index)), :, index] = rows[:, :, 0]


def row_copy_geometry(
    d: GraphDims, itemsize: int, batch: int, row: int, rows: int, cache_rows: int | None = None
) -> dict[str, int]:
    """One pitched 2-D copy (cudaMemcpy2DAsync) that stores `rows` new rows of a contiguous
    [batch, heads, rows, D] present tensor at row `row` of a [*, heads, cache_rows, D] cache
    (default L): one copy row per (sample, head); the first `batch` samples of a batch-leading
    cache are a contiguous prefix."""
    width = rows * d.head_dim * itemsize
    return {
        "src_offset": 0,
        "dst_offset": row * d.head_dim * itemsize,
        "dpitch": (cache_rows or d.max_length) * d.head_dim * itemsize,
        "spitch": width,
        "width": width,
        "height": batch * d.heads,
    }


def step_copy_geometry(d: GraphDims, itemsize: int, steps, cache_rows: int | None = None) -> list[dict[str, int]]:
    """Pitched 2-D copies that store a step's new rows [B, heads, 1, D] at row steps[b] of each
    sample b of a [*, heads, cache_rows, D] cache: one copy for the whole batch when every row
    is at the same step, else one copy per sample (heads copy rows each; offsets relative to
    the present and cache buffers)."""
    steps = [int(s) for s in steps]
    rows = cache_rows or d.max_length
    if all(s == steps[0] for s in steps):
        return [row_copy_geometry(d, itemsize, len(steps), steps[0], 1, rows)]
    copies = []
    for b, s in enumerate(steps):
        g = row_copy_geometry(d, itemsize, 1, s, 1, rows)
        g["src_offset"] = b * d.heads * d.head_dim * itemsize
        g["dst_offset"] += b * d.heads * rows * d.head_dim * itemsize
        copies.append(g)
    return copies


def bucket_copy_geometry(d: GraphDims, itemsize: int, batch: int, src_rows: int, dst_rows: int) -> dict[str, int]:
    """One pitched 2-D copy of the first min(src, dst) rows of every (sample, head) from a
    [batch, heads, src_rows, D] cache into a [batch, heads, dst_rows, D] one (a bucket switch)."""
    width = min(src_rows, dst_rows) * d.head_dim * itemsize
    return {"src_offset": 0, "dst_offset": 0, "spitch": src_rows * d.head_dim * itemsize,
            "dpitch": dst_rows * d.head_dim * itemsize, "width": width, "height": batch * d.heads}


def kv_pair_named(stack: str, name: str) -> KvPair | None:
    """The pair of `stack` whose step-graph tensor is `name` (`past_key.3` / `present_value.0`)."""
    for kind_of_io in ("past", "present"):
        for kind in ("key", "value"):
            prefix = f"{kind_of_io}_{kind}."
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                return KvPair(stack, int(name[len(prefix):]), kind)
    return None
