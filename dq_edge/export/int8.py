"""int8 graphs: explicit QuantizeLinear/DequantizeLinear, calibrated on real data.

Quantizer: `onnxruntime.quantization.quantize_static` (QDQ format, int8, per-channel weights)
from the pinned CPU `onnxruntime` wheel; no package that could swap it for onnxruntime-gpu.
Choices made for TensorRT's strongly typed int8 path:
- symmetric int8 activations and weights (TensorRT requires zero point 0);
- only weight-bearing ops (Conv, MatMul/Gemm with an initializer) get Q/DQ: attention score
  products stay in float, which keeps token agreement high and matches TensorRT's fusions;
  the output heads (logits) stay float too;
- no ORT graph optimisation before quantising (it would introduce ORT-only fused ops);
- the dgc graph stays fp32 (`quantized: false` in the manifest): the nearest-code search
  must not flip codes.
Calibration: real images -> encoder -> dgc -> decoder feeds; the images' grain/code maps ->
token sequences (dq_edge.sequences) -> step inputs of the fp32 graphs (dq_edge.export.drive).
The step graphs' feeds carry full KV caches (200 MB per feed at the official 256-px dims), so
they are streamed: the quantizer's data reader pulls them from a generator that fills one
sequence's caches with one fp32 prefill call and hands over every k-th step's feed, which the
calibrator reduces to per-tensor min/max at once. Memory: one sequence's caches, not every
recorded step's (issue 14: the list version exceeded 20 GB at p6c18); time: one prefill per
sequence plus one step per recorded feed, not a replay of every step. The VAE graphs' and prefill's feeds (images,
features, token ids) are small and kept as lists.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from dq_edge.errors import DQEdgeError, InputError
from dq_edge.export.drive import Feed, content_feed, cpu_session, position_feed, prefill_caches, run, token_sequences
from dq_edge.export.fp16 import name_nodes
from dq_edge.graph_io import GraphDims
from dq_edge.tokens import TokenLayout

QUANT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
UNQUANTIZED_GRAPHS = ("dgc",)
MAX_FEEDS_PER_GRAPH = 64


@contextlib.contextmanager
def _quiet_root_logger():
    """The quantizer logs advice on the root logger; library code stays silent."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


FeedSource = Callable[[], Iterator[Feed]]  # a fresh pass over one graph's calibration feeds


class StreamReader(CalibrationDataReader):
    """Hands the calibrator one feed at a time from a (re-startable) source, counting them."""

    def __init__(self, source: FeedSource):
        self._source = source
        self._it = source()
        self.count = 0

    def get_next(self) -> Feed | None:
        feed = next(self._it, None)
        self.count += feed is not None
        return feed

    def rewind(self) -> None:
        self._it, self.count = self._source(), 0


@dataclass
class CalibrationFeeds:
    """Input feeds per graph from running the fp32 graphs on real data: small ones as lists,
    the step graphs' (KV caches) as streams produced on demand."""

    feeds: dict[str, list[Feed]] = field(default_factory=dict)
    streams: dict[str, FeedSource] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def source(self, graph: str) -> FeedSource:
        if graph in self.streams:
            return self.streams[graph]
        feeds = self.feeds.get(graph, [])
        return lambda: iter(feeds)


def weight_nodes(model: onnx.ModelProto) -> list[str]:
    """Conv/MatMul/Gemm nodes that multiply by an initializer (a weight), except the output
    heads: the last such node before a `*_logits` output stays float, since the logit gaps
    decide the sampled token (measured on random-init emoji64: greedy agreement 94.9 -> 95.3 %)."""
    inits = {t.name for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in QUANT_OPS and any(i in inits for i in n.input[:2])]
    heads = head_nodes(model)
    return [n.name for n in nodes if n.name not in heads]


def head_nodes(model: onnx.ModelProto) -> set[str]:
    producer = {o: n for n in model.graph.node for o in n.output}
    heads = set()
    for out in model.graph.output:
        node = producer.get(out.name) if out.name.endswith("logits") else None
        while node is not None and node.op_type not in QUANT_OPS:
            node = producer.get(node.input[0]) if node.input else None
        if node is not None:
            heads.add(node.name)
    return heads


def collect_feeds(
    fp32_files: dict[str, Path],
    dims: GraphDims,
    layout: TokenLayout | None,
    images: np.ndarray,
    batch: int,
) -> CalibrationFeeds:
    """`images` float32 [N,3,H,W] in [-1,1]: real calibration images."""
    if images.ndim != 4 or images.shape[1:] != (3, dims.image_size, dims.image_size):
        raise InputError(
            f"calibration images have shape {tuple(images.shape[1:])}, the model needs (3, {dims.image_size}, {dims.image_size})",
            "pass images of the model's size (or a dataset the model was trained on)",
        )
    out = CalibrationFeeds(info={"num_images": int(len(images))})
    sessions = {g: cpu_session(fp32_files[g]) for g in ("encoder", "dgc")}
    grains, codes_all = [], []
    for lo in range(0, len(images), batch):
        image = np.ascontiguousarray(images[lo : lo + batch], dtype=np.float32)
        out.feeds.setdefault("encoder", []).append({"image": image})
        feats = run(sessions["encoder"], {"image": image})
        dgc_feed = {"h_coarse": feats["h_coarse"], "h_fine": feats["h_fine"]}
        if dims.router == "entropy":
            dgc_feed["image"] = image
        out.feeds.setdefault("dgc", []).append(dgc_feed)
        res = run(sessions["dgc"], dgc_feed)
        out.feeds.setdefault("decoder", []).append({"codes": res["codes"]})
        grains.append(res["grain"])
        codes_all.append(res["codes"])
    if layout is not None and "transformer_position_step" in fp32_files:
        _collect_token_feeds(out, fp32_files, dims, layout, np.concatenate(grains), np.concatenate(codes_all))
    return out


def _collect_token_feeds(out: CalibrationFeeds, files: dict[str, Path], dims: GraphDims, layout: TokenLayout, grain, codes) -> None:
    content, position, segment, lengths = token_sequences(grain, codes, layout)
    sequences = [tuple(a[i : i + 1, : int(lengths[i])] for a in (content, position, segment)) for i in range(len(content))]
    # spread the recorded steps over every sample's sequence, within the feed budget
    every = max(1, int(np.ceil(int(lengths.sum()) / MAX_FEEDS_PER_GRAPH)))
    for graph in ("transformer_position_step", "transformer_content_step"):
        out.streams[graph] = functools.partial(step_feeds, files, dims, sequences, graph, every)
    out.feeds["transformer_prefill"] = [{"content": c, "position": p, "segment": s} for c, p, s in sequences]
    out.info["num_sequences"] = len(sequences)
    out.info["mean_length"] = float(lengths.mean())
    out.info["recorded_every_steps"] = every


def step_feeds(files: dict[str, Path], dims: GraphDims, sequences: list[tuple], graph: str, every: int) -> Iterator[Feed]:
    """`graph`'s input at every `every`-th step (counted over all sequences, so both step graphs
    see the same steps). A sequence's caches come from one fp32 prefill call (drive.prefill_caches:
    identical to stepping, since a step masks the rows after it), so a recorded step costs one
    call instead of replaying every step before it. Feeds share one sequence's caches: only they
    are alive, and the calibrator runs and reduces each feed before pulling the next."""
    prefill = cpu_session(files["transformer_prefill"])
    position_step = cpu_session(files["transformer_position_step"]) if graph == "transformer_content_step" else None
    seen = 0
    for c, p, s in sequences:
        steps = [t for t in range(c.shape[1] - 1) if (seen + t + 1) % every == 0]
        seen += c.shape[1] - 1
        if not steps:
            continue
        pos_cache, con_cache = prefill_caches(prefill, dims, c, p, s)
        for t in steps:
            feed = position_feed(pos_cache, c, p, s, t)
            if position_step is None:
                yield feed
            else:
                yield content_feed(con_cache, run(position_step, feed)["hidden"], p, s, t)


def quantize_graph(src: Path, dst: Path, feeds: Iterable[Feed] | FeedSource, graph: str) -> dict:
    """Write the int8 QDQ version of `src` to `dst`; returns manifest extras for this graph.
    `feeds`: a list, or a source of fresh iterators (streamed, see the module doc)."""
    if not callable(feeds):
        listed = list(feeds)
        feeds = lambda: iter(listed)  # noqa: E731
    reader = StreamReader(feeds)
    no_data = DQEdgeError(f"no calibration data for graph {graph}", "pass calibration images of the model's size")
    if reader.get_next() is None:
        raise no_data
    reader.rewind()
    model = onnx.load(str(src))
    name_nodes(model)
    nodes = weight_nodes(model)
    named = dst.with_suffix(".named.onnx")
    onnx.save(model, str(named))
    del model  # the quantizer loads its own copy: at 256-px dims each copy is ~1 GB
    try:
        with _quiet_root_logger():
            quantize_static(
                str(named),
                str(dst),
                reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_quantize=nodes,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
                    # int32 bias Q/DQ is not importable by TensorRT: biases stay float
                    "QuantizeBias": False,
                },
            )
    except DQEdgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the quantizer raises many types
        raise DQEdgeError(f"int8 quantization of {graph} failed: {type(exc).__name__}: {exc}", "rerun with --debug and report it") from exc
    finally:
        named.unlink(missing_ok=True)
    return {"quantized": True, "quantized_nodes": len(nodes), "calibration_feeds": reader.count}
