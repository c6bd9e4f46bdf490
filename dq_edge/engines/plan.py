"""What `dq-edge build-engine` will build, decided without TensorRT.

Everything here is pure Python so it is tested on machines without a GPU: which graphs, which
ONNX files, the optimization profile of every input (read from `dq_edge.graph_io`, never
restated), engine file names (TensorRT version + compute capability), and how the network is
typed for a given TensorRT version. `dq_edge.engines.build` only turns this plan into
TensorRT calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dq_edge.errors import UsageError
from dq_edge import precisions
from dq_edge.graph_io import GRAPH_NAMES, GraphDims, GraphSpec, graph_specs
from dq_edge.tokens import TokenLayout

# A profile: input name -> (min, opt, max) shapes
Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


@dataclass(frozen=True)
class GpuTarget:
    """The machine an engine is built for (engines only run on the same TensorRT + SM)."""

    tensorrt_version: str  # full version string, e.g. "10.3.0.30"
    gpu_name: str  # e.g. "Orin", "NVIDIA GeForce RTX 3090"
    compute_capability: tuple[int, int]  # e.g. (8, 7)

    @property
    def trt_tag(self) -> str:
        """`trt10.3`: major.minor decide engine compatibility across TensorRT patch releases."""
        return "trt" + ".".join(self.tensorrt_version.split(".")[:2])

    @property
    def sm_tag(self) -> str:
        major, minor = self.compute_capability
        return f"sm{major}{minor}"

    @property
    def tensorrt_major(self) -> int:
        return int(self.tensorrt_version.split(".")[0])

    def to_dict(self) -> dict:
        return {
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "GpuTarget":
        major, minor = d["compute_capability"]
        return cls(str(d["tensorrt_version"]), str(d["gpu_name"]), (int(major), int(minor)))


@dataclass(frozen=True)
class ExportSource:
    """The parts of a verified export folder that the engine builder needs."""

    folder: Path
    precision: str
    dims: GraphDims
    layout: TokenLayout | None  # None for a VAE-only export
    max_batch: int
    onnx_files: dict[str, Path]  # graph name -> ONNX file of `precision`
    onnx_sha256: dict[str, str]  # graph name -> sha256 recorded in the export manifest
    manifest_sha256: str  # sha256 of the export manifest.json (ties engines to one export)


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp16"
    max_batch: int | None = None  # None = the export's max batch
    workspace_gib: float = 2.0
    opt_level: int = 3  # TensorRT builder_optimization_level 0..5 (3 is TensorRT's default)
    timing_cache: Path | None = None
    only: tuple[str, ...] = ()  # empty = every graph of the export

    def __post_init__(self) -> None:
        if self.precision not in precisions.trt_buildable():
            precisions.get(self.precision)  # an unknown name: UsageError listing the table
            raise UsageError(
                f"TensorRT does not build {self.precision} graphs (they run on {', '.join(precisions.get(self.precision).backends)})",
                f"use one of {', '.join(precisions.trt_buildable())}",
            )
        if not 0 <= self.opt_level <= 5:
            raise UsageError(f"--opt-level {self.opt_level} is out of range", "TensorRT accepts 0..5")
        if self.workspace_gib <= 0:
            raise UsageError(f"--workspace {self.workspace_gib} GiB must be positive", "e.g. --workspace 2")
        if self.max_batch is not None and self.max_batch < 1:
            raise UsageError(f"--max-batch {self.max_batch} must be >= 1", "e.g. --max-batch 8")

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gib * (1 << 30))


@dataclass(frozen=True)
class GraphPlan:
    name: str
    onnx_file: Path
    onnx_sha256: str
    engine_file: str  # file name inside the engine folder
    spec: GraphSpec
    profile: Profile = field(repr=False)


@dataclass(frozen=True)
class NetworkTyping:
    """How the network is created for a TensorRT version (see `network_typing`)."""

    strongly_typed: bool  # precision comes from the ONNX tensor types
    creation_flag: bool  # pass NetworkDefinitionCreationFlag.STRONGLY_TYPED to create_network
    builder_flags: tuple[str, ...] = ()  # BuilderFlag names to set (weakly typed fallback only)


def parse_only(text: str | None) -> tuple[str, ...]:
    """`--only a,b` -> ("a", "b"); unknown names are a usage error naming the valid ones."""
    if not text:
        return ()
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in GRAPH_NAMES]
    if unknown or not names:
        raise UsageError(f"--only: unknown graph {', '.join(unknown) or repr(text)}", f"graphs: {', '.join(GRAPH_NAMES)}")
    return names


def engine_file_name(graph: str, precision: str, target: GpuTarget) -> str:
    """e.g. `transformer_position_step.fp16.trt10.3.sm87.plan`."""
    return f"{graph}.{precision}.{target.trt_tag}.{target.sm_tag}.plan"


def network_typing(tensorrt_version: str, has_strongly_typed_flag: bool, precision: str) -> NetworkTyping:
    """Typed ONNX + strongly typed network on TensorRT 10.x/11.x; builder flags only as a fallback.

    - TensorRT >= 11: always strongly typed; the creation flag is deprecated and ignored, and the
      FP16/INT8 builder flags no longer exist, so nothing is set.
    - TensorRT 9.x/10.x: STRONGLY_TYPED creation flag; precision comes from the ONNX tensor types.
    - Older TensorRT (no STRONGLY_TYPED): weakly typed build, FP16 / INT8 builder flags let the
      builder run the fp16 / Q/DQ layers in reduced precision.
    """
    major = int(tensorrt_version.split(".")[0])
    if major >= 11:
        return NetworkTyping(strongly_typed=True, creation_flag=False)
    if has_strongly_typed_flag:
        return NetworkTyping(strongly_typed=True, creation_flag=True)
    fallback = precisions.get(precision).trt_flags
    return NetworkTyping(strongly_typed=False, creation_flag=False, builder_flags=fallback)


def profile_for(spec: GraphSpec) -> Profile:
    """min/opt/max of every input with a symbolic dim, straight from the spec.

    Fully static inputs get no entry: TensorRT takes their shape from the network.
    KV caches keep their static heads / L / head_dim; only their batch dim ranges.
    """
    dynamic = {t.name for t in spec.inputs if any(isinstance(d, str) for d in t.dims)}
    return {name: shapes for name, shapes in spec.profile().items() if name in dynamic}


def choose_graphs(available: tuple[str, ...] | list[str], only: tuple[str, ...], precision: str) -> tuple[str, ...]:
    """Graphs to build, in GRAPH_NAMES order; `--only` names must exist in the export."""
    if not only:
        return tuple(g for g in GRAPH_NAMES if g in available)
    missing = [g for g in only if g not in available]
    if missing:
        raise UsageError(
            f"--only: the export has no {precision} graph {', '.join(missing)}",
            f"it has: {', '.join(available) or 'none'}",
        )
    return tuple(g for g in GRAPH_NAMES if g in only)


def check_request(source: ExportSource, options: BuildOptions) -> tuple[int, tuple[str, ...]]:
    """(max batch, graphs) of a build request, validated against the export before any TensorRT call."""
    max_batch = options.max_batch or source.max_batch
    if max_batch > source.max_batch:
        raise UsageError(
            f"--max-batch {max_batch} exceeds the export's max batch {source.max_batch}",
            f"re-run `dq-edge export ... --max-batch {max_batch}` or pass --max-batch <= {source.max_batch}",
        )
    return max_batch, choose_graphs(tuple(source.onnx_files), options.only, options.precision)


def make_plan(source: ExportSource, options: BuildOptions, target: GpuTarget) -> list[GraphPlan]:
    """One GraphPlan per graph to build, with profiles for the requested max batch."""
    max_batch, graphs = check_request(source, options)
    specs = graph_specs(source.dims, options.precision, max_batch)
    return [
        GraphPlan(
            name=g,
            onnx_file=source.onnx_files[g],
            onnx_sha256=source.onnx_sha256[g],
            engine_file=engine_file_name(g, options.precision, target),
            spec=specs[g],
            profile=profile_for(specs[g]),
        )
        for g in graphs
    ]


def export_source(folder: str | Path, precision: str) -> ExportSource:
    """Verify one precision of an export folder (sha256 of every ONNX file) and view it."""
    from dq_edge.artifact.export import load_export  # noqa: PLC0415

    info = load_export(folder, precision)
    return ExportSource(
        folder=Path(folder),
        precision=precision,
        dims=info.dims,
        layout=info.layout,
        max_batch=info.max_batch,
        onnx_files=dict(info.files),
        onnx_sha256=dict(info.sha256),
        manifest_sha256=info.manifest_sha256,  # of the bytes load_export read: no second read
    )


def trtexec_command(engine_path: str | Path, shapes: dict[str, tuple[int, ...]], inputs: dict[str, str | Path] | None = None) -> str:
    """An external cross-check of one engine with NVIDIA's trtexec (GPU time without Python).

    `shapes`: the runtime shape of every dynamic input; `inputs`: raw little-endian files of
    valid input values (token ids inside the vocabulary), which trtexec's random data is not.
    """
    cmd = f"trtexec --loadEngine={engine_path} --useCudaGraph --noDataTransfers"
    if shapes:
        cmd += " --shapes=" + ",".join(f"{n}:{'x'.join(str(d) for d in dims)}" for n, dims in shapes.items())
    if inputs:
        cmd += " --loadInputs=" + ",".join(f"{n}:{p}" for n, p in inputs.items())
    return cmd


def profile_to_dict(profile: Profile) -> dict[str, dict[str, list[int]]]:
    return {name: {"min": list(lo), "opt": list(opt), "max": list(hi)} for name, (lo, opt, hi) in profile.items()}


def rebuild_command(export_folder: Path | str, precision: str, engine_folder: Path | str, max_batch: int | None = None) -> str:
    """The command that recreates an engine folder; named in every mismatch error."""
    cmd = f"dq-edge build-engine {export_folder} --{precision} --out {engine_folder}"
    return cmd + (f" --max-batch {max_batch}" if max_batch else "")
