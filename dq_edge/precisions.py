"""The one table of precisions: what each is, which graphs it changes, which backends run it.

Adding a precision is one `Precision` entry here plus the code that produces its files (named
by `produced_by`); export, the manifest, the runtime, the engine builder and the CLI read the
table instead of spelling precision names. Torch-free and dependency-free: the runtime and the
engine builder import it on devices that have neither torch nor onnx.
"""

from __future__ import annotations

from dataclasses import dataclass

from dq_edge.errors import UsageError

BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt", "trt")
ORT_BACKENDS = ("ort-cpu", "ort-cuda")


@dataclass(frozen=True)
class Precision:
    name: str
    suffix: str  # file name: <graph>.<suffix>.onnx
    summary: str  # one line for help texts and docs
    graphs: str  # which graphs the conversion changes (the others are fp32 copies)
    backends: tuple[str, ...]  # backends that run the files
    produced_by: str  # "torch.onnx" | "fp16" | "int8-qdq" | "weight-only"
    needs_calibration: bool
    activation: str = "float32"  # dtype of features, hidden states and KV caches at graph IO
    weight_bits: int = 32  # bits per weight of the converted MatMuls (for bandwidth floors)
    trt_flags: tuple[str, ...] = ()  # TensorRT builder flags of a weakly typed build / the ORT TensorRT EP
    # engine-vs-ONNX comparison: (rtol, atol) for floats, allowed share of mismatching int outputs
    compare_tolerance: tuple[float, float] = (1e-3, 1e-3)
    int_mismatch: float = 0.0


TABLE: tuple[Precision, ...] = (
    Precision(
        "fp32", "fp32", "reference, exported by torch.onnx", "all", BACKENDS, "torch.onnx", False,
    ),
    Precision(
        "fp16", "fp16", "fp16 with fp32 norms, softmax and residual sums", "all but dgc (fp16 IO, fp32 body)",
        BACKENDS, "fp16", False, activation="float16", weight_bits=16, trt_flags=("FP16",),
        compare_tolerance=(2e-2, 2e-2), int_mismatch=0.01,
    ),
    Precision(
        "int8", "int8", "explicit QuantizeLinear/DequantizeLinear (the format TensorRT builds), calibrated",
        "encoder, decoder, transformer graphs (weight-bearing Conv/MatMul/Gemm, heads excluded); dgc fp32",
        BACKENDS, "int8-qdq", True, weight_bits=8, trt_flags=("FP16", "INT8"),
        compare_tolerance=(1e-1, 1e-1), int_mismatch=0.05,
    ),
    Precision(
        "w8", "w8", "weight-only int8 MatMulNBits (ONNX Runtime), no calibration",
        "transformer graphs (MatMuls with a weight, output heads excluded); VAE graphs fp32",
        ORT_BACKENDS, "weight-only", False, weight_bits=8,
    ),
    Precision(
        "w4", "w4", "weight-only int4 MatMulNBits (ONNX Runtime), no calibration",
        "transformer graphs (MatMuls with a weight, output heads excluded); VAE graphs fp32",
        ORT_BACKENDS, "weight-only", False, weight_bits=4,
    ),
)

_BY_NAME = {p.name: p for p in TABLE}
PRECISION_NAMES: tuple[str, ...] = tuple(p.name for p in TABLE)


def get(name: str) -> Precision:
    """The table entry for `name`; an unknown name is a UsageError listing the table."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown precision {name!r}", f"choose from {', '.join(PRECISION_NAMES)}") from None


def parse_list(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """'fp32,w8' -> ['fp32', 'w8'] in table order; unknown names (or none) are a UsageError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [p.strip().lower() for p in items if p.strip()]
    unknown = [p for p in names if p not in _BY_NAME]
    if unknown or not names:
        raise UsageError(
            f"unknown precision {', '.join(unknown) or '(none given)'}",
            f"choose from {', '.join(PRECISION_NAMES)}, comma separated",
        )
    return [p for p in PRECISION_NAMES if p in names]


def for_backend(backend: str) -> tuple[str, ...]:
    """Precisions whose files `backend` runs."""
    return tuple(p.name for p in TABLE if backend in p.backends)


def trt_buildable() -> tuple[str, ...]:
    return for_backend("trt")


def markdown_table() -> str:
    """The table as Markdown (docs/export.md shows it; a test keeps the two in sync)."""
    rows = ["| precision | file | graphs | backends | produced by | calibration |", "|---|---|---|---|---|---|"]
    for p in TABLE:
        rows.append(
            f"| `{p.name}` | `<graph>.{p.suffix}.onnx` | {p.graphs} | {', '.join(p.backends)} | {p.summary} | "
            f"{'yes' if p.needs_calibration else 'no'} |"
        )
    return "\n".join(rows)
