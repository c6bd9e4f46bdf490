"""TensorRT vs ONNX Runtime, graph by graph, with Polygraphy (`dq-edge compare`).

Polygraphy's `Comparator.run` feeds the same inputs to an `OnnxrtRunner` (the export's ONNX on
CPU) and a `TrtRunner` (the engine folder's plan); `Comparator.compare_accuracy` judges the
float outputs with per-precision tolerances, and integer outputs (grain, codes) are judged by
their share of mismatching elements (a near-tie may flip a code in fp16 / int8).

Inputs come from the graph specs with valid values: token ids inside their vocabularies,
`step` inside the cache, K/V caches filled only below `step` (what a real run holds), images
in [-1, 1]; the dgc and decoder graphs are fed the ONNX Runtime outputs of the graph before
them when it is compared too, so they see realistic features and code maps.

Without TensorRT / a GPU only the ONNX Runtime side runs: that is reported as such, never as a
pass. Library code: returns results, prints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dq_edge import precisions
from dq_edge.engines.plan import ExportSource
from dq_edge.graph_io import CACHE_ROWS, GRAPH_NAMES, GraphSpec, graph_specs

# precision -> (atol, rtol) for float outputs, and the allowed share of differing integer elements
TOLERANCES = {p.name: p.compare_tolerance for p in precisions.TABLE}
INT_MISMATCH = {p.name: p.int_mismatch for p in precisions.TABLE}

RunnerFactory = Callable[[str], Any]  # graph name -> Polygraphy runner for the second side


@dataclass
class OutputCheck:
    name: str
    shape: tuple[int, ...]
    finite: bool  # ONNX Runtime side: no NaN / inf
    max_abs_err: float | None = None  # vs the second side (None when it did not run)
    mismatch: float | None = None  # integer outputs: share of differing elements
    passed: bool | None = None


@dataclass
class GraphComparison:
    graph: str
    compared: bool  # False: only ONNX Runtime ran
    outputs: list[OutputCheck] = field(default_factory=list)
    feed: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # the inputs both sides got
    polygraphy_passed: bool | None = None  # Comparator.compare_accuracy on the float outputs (None: none)

    @property
    def passed(self) -> bool | None:
        if not self.compared:
            return None
        return all(o.passed for o in self.outputs) and self.polygraphy_passed is not False


def feed_sizes(spec: GraphSpec, batch: int, tokens: int) -> dict[str, int]:
    return {"batch": batch, "tokens": tokens, "tokens_minus_1": tokens - 1, CACHE_ROWS: spec.ranges.get(CACHE_ROWS, (0, 0, 0))[2]}


def make_feed(spec: GraphSpec, source: ExportSource, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Valid inputs for one graph (see the module docstring)."""
    d = source.dims
    L = d.max_length
    tokens = min(L, 8)
    step = min(L - 1, max(1, L // 2))
    n_codes = source.layout.n_codes if source.layout is not None else 1
    vocab = {"content": d.content_vocab, "position": d.position_vocab, "next_position": d.position_vocab}
    feed: dict[str, np.ndarray] = {}
    for t in spec.inputs:
        shape = t.shape(feed_sizes(spec, batch, tokens))
        if t.name == "step":
            feed[t.name] = np.full(shape, step, np.int64)  # every sample at the same step
        elif t.name in ("segment", "next_segment"):
            feed[t.name] = rng.integers(0, 2, shape).astype(np.int64)
        elif t.name in vocab:
            feed[t.name] = rng.integers(0, vocab[t.name], shape).astype(np.int64)
        elif t.name == "codes":
            feed[t.name] = rng.integers(0, n_codes, shape).astype(np.int64)
        elif t.name == "image":
            feed[t.name] = rng.uniform(-1, 1, shape).astype(np.float32)
        elif t.name.startswith("past_"):
            cache = (0.5 * rng.standard_normal(shape)).astype(t.dtype)
            cache[:, :, step:] = 0  # rows at and after `step` are not written yet in a real run
            feed[t.name] = cache
        else:  # features and hidden states
            feed[t.name] = rng.standard_normal(shape).astype(t.dtype)
    return feed


def _chain(graph: str, feed: dict[str, np.ndarray], previous: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Feed dgc / decoder with the ONNX Runtime outputs of encoder / dgc when available."""
    upstream = {"dgc": "encoder", "decoder": "dgc"}.get(graph)
    if upstream in previous:
        feed.update({k: v for k, v in previous[upstream].items() if k in feed})
    return feed


def _check_outputs(graph: str, ort_out: dict[str, np.ndarray], other: dict[str, np.ndarray] | None, precision: str) -> list[OutputCheck]:
    atol, rtol = TOLERANCES[precision]
    checks = []
    for name, a in ort_out.items():
        a = np.asarray(a)
        check = OutputCheck(name, tuple(a.shape), bool(np.all(np.isfinite(a))) if a.dtype.kind == "f" else True)
        if other is not None:
            b = np.asarray(other[name])
            if a.dtype.kind == "f":
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
                check.max_abs_err = float(diff.max()) if diff.size else 0.0
                check.passed = bool(np.all(diff <= atol + rtol * np.abs(a.astype(np.float64)))) and check.finite
            else:
                check.mismatch = float(np.mean(a != b)) if a.size else 0.0
                check.passed = check.mismatch <= INT_MISMATCH[precision]
        checks.append(check)
    return checks


def _polygraphy_verdict(results: Any, float_outputs: set[str], precision: str) -> bool:
    from polygraphy.comparator import Comparator  # noqa: PLC0415

    try:
        from polygraphy.comparator import SimpleCompareFunc as simple  # noqa: PLC0415 - Polygraphy >= 0.50
    except ImportError:
        from polygraphy.comparator import CompareFunc  # noqa: PLC0415

        simple = CompareFunc.simple
    atol, rtol = TOLERANCES[precision]
    func = simple(
        atol=atol,
        rtol=rtol,
        find_output_func=lambda name, index, iter_result: [name] if name in float_outputs else [],
    )
    return bool(Comparator.compare_accuracy(results, compare_func=func))


def save_feeds(report: list[GraphComparison], folder: Path, engine_files: dict[str, Path] | None = None) -> dict[str, str]:
    """Write each graph's inputs as raw files `<folder>/<graph>/<input>.bin` (trtexec --loadInputs)
    and return a trtexec command per graph that replays them on its engine."""
    from dq_edge.atomic import write_bytes  # noqa: PLC0415
    from dq_edge.engines.plan import trtexec_command  # noqa: PLC0415

    commands = {}
    for g in report:
        paths = {}
        for name, value in g.feed.items():
            path = Path(folder) / g.graph / f"{name}.bin"
            write_bytes(path, np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes())
            paths[name] = path
        shapes = {n: tuple(v.shape) for n, v in g.feed.items()}
        engine = engine_files[g.graph] if engine_files and g.graph in engine_files else f"<{g.graph} engine>.plan"
        commands[g.graph] = trtexec_command(engine, shapes, paths)
    return commands


def trt_runner_factory(engine_files: dict[str, Path]) -> RunnerFactory:
    """Polygraphy TrtRunners over the engine folder's plan files (needs TensorRT + a GPU)."""

    def make(graph: str) -> Any:
        from polygraphy.backend.common import BytesFromPath  # noqa: PLC0415
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner  # noqa: PLC0415

        return TrtRunner(EngineFromBytes(BytesFromPath(str(engine_files[graph]))), name=f"trt:{graph}")

    return make


def compare_graphs(
    source: ExportSource,
    graphs: tuple[str, ...] | list[str] = (),
    second: RunnerFactory | None = None,
    batch: int = 2,
    seed: int = 0,
) -> list[GraphComparison]:
    """Run every graph on ONNX Runtime and, when `second` is given, on the second side too."""
    from polygraphy.logger import G_LOGGER  # noqa: PLC0415

    with G_LOGGER.verbosity(G_LOGGER.ERROR):  # library code: Polygraphy's log would go to stdout
        return _compare(source, graphs, second, batch, seed)


def _compare(source: ExportSource, graphs: tuple[str, ...] | list[str], second: RunnerFactory | None, batch: int, seed: int) -> list[GraphComparison]:
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx  # noqa: PLC0415
    from polygraphy.comparator import Comparator  # noqa: PLC0415

    batch = min(batch, source.max_batch)
    specs = graph_specs(source.dims, source.precision, source.max_batch)
    rng = np.random.default_rng(seed)
    previous: dict[str, dict[str, np.ndarray]] = {}
    report = []
    for graph in [g for g in GRAPH_NAMES if g in (graphs or source.onnx_files)]:
        feed = _chain(graph, make_feed(specs[graph], source, batch, rng), previous)
        session = SessionFromOnnx(str(source.onnx_files[graph]), providers=["CPUExecutionProvider"])
        runners = [OnnxrtRunner(session, name=f"onnxrt:{graph}")]
        if second is not None:
            runners.append(second(graph))
        results = Comparator.run(runners, data_loader=[feed])
        outputs = [{k: np.asarray(v) for k, v in iters[0].items()} for _, iters in results.items()]
        previous[graph] = outputs[0]
        checks = _check_outputs(graph, outputs[0], outputs[1] if second is not None else None, source.precision)
        comparison = GraphComparison(graph, second is not None, checks, feed)
        if second is not None:
            floats = {o.name for o in checks if o.mismatch is None}
            if floats:  # Polygraphy refuses a comparison with every output skipped (dgc: ints only)
                comparison.polygraphy_passed = _polygraphy_verdict(results, floats, source.precision)
        report.append(comparison)
    return report
