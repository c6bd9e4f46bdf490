"""Open an export folder (ONNX) or an engine folder (TensorRT) on the best or the requested backend.

`auto` tries, in order: the native TensorRT backend (engine folders only), ONNX Runtime's
TensorRT execution provider, its CUDA provider, then its CPU provider, and records why it chose
what it chose. An explicitly requested backend that cannot run raises BackendUnavailableError
naming what to install. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dq_edge.errors import BackendUnavailableError, ConfigError, InputError, UsageError
from dq_edge import precisions
from dq_edge.runtime.backend import Backend
from dq_edge.tokens import TokenLayout

BACKENDS = ("auto", "ort-cpu", "ort-cuda", "ort-trt", "trt")
ORT_ORDER = ("ort-trt", "ort-cuda", "ort-cpu")
EXPORT_FORMAT = "dq-edge-export"
ENGINE_FORMAT = "dq-edge-engines"


@dataclass
class Runtime:
    """An opened backend plus how it was chosen (for the CLI and summary.json)."""

    backend: Backend
    kind: str  # "export" | "engine"
    folder: Path
    precision: str
    layout: TokenLayout
    reason: str
    skipped: list[str] = field(default_factory=list)  # "<backend>: <why not>" for auto


def folder_kind(folder: str | Path) -> str:
    """"export" or "engine" from the folder's manifest.json."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not folder.is_dir():
        raise InputError(f"{folder} does not exist or is not a folder", "pass a folder written by `dq-edge export` or `dq-edge build-engine`")
    if not path.is_file():
        raise ConfigError(f"{folder} has no manifest.json", "pass a folder written by `dq-edge export` or `dq-edge build-engine`")
    try:
        fmt = json.loads(path.read_text()).get("format")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a valid manifest: {exc}", "re-run `dq-edge export` for this folder") from exc
    if fmt == EXPORT_FORMAT:
        return "export"
    if fmt == ENGINE_FORMAT:
        return "engine"
    raise ConfigError(f"{path} is not a dq-edge export or engine manifest (format {fmt!r})", "pass an export or engine folder")


def _choose_precision(available: list[str], requested: str | None, folder: Path) -> str:
    if requested is not None:
        precisions.get(requested)  # an unknown name: UsageError listing the table
    if requested is None:
        return "fp32" if "fp32" in available else available[0]
    if requested not in available:
        raise ConfigError(
            f"{folder} has no {requested} graphs (it has: {', '.join(available) or 'none'})",
            f"re-run `dq-edge export MODEL --out {folder} --precision {','.join(sorted(set(available) | {requested}))} --force`",
        )
    return requested


def _open_ort(folder: Path, backend: str, precision: str, threads: int | None, max_batch: int | None) -> Backend:
    from dq_edge.export.manifest import load_export  # torch-free
    from dq_edge.runtime.ort_backend import OrtBackend

    info = load_export(folder, precision)
    if info.layout is None:
        raise ConfigError(f"{folder} was exported without a transformer; nothing to generate", "export a model folder that has both stages")
    return OrtBackend(
        info.files,
        info.dims,
        info.layout,
        precision,
        max_batch or info.max_batch,
        provider=backend.removeprefix("ort-"),
        threads=threads,
        cache_dir=_trt_ep_cache(folder),
    )


def _trt_ep_cache(folder: Path) -> Path:
    """Engines the ORT TensorRT EP builds, per export (keyed by its manifest), outside the
    export folder (which may be read-only and is covered by sha256 checks)."""
    from dq_edge.atomic import sha256_file
    from dq_edge.runtime.default_model import cache_root

    return cache_root() / "ort-trt" / sha256_file(folder / "manifest.json")[:16]


def _open_trt(folder: Path, precision: str | None, cuda_graph: bool = False) -> Backend:
    from dq_edge.engines_probe import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(
            f"the TensorRT backend cannot run here: {reason}",
            "install TensorRT + cuda-python on an NVIDIA GPU machine, or run an export folder with --backend ort-cpu",
        )
    from dq_edge.engines.trt_backend import TrtBackend  # needs tensorrt + cuda-python

    return TrtBackend(folder, precision=precision, cuda_graph=cuda_graph)


def _engine_precision(folder: Path) -> tuple[str, str]:
    from dq_edge.engines.manifest import read_manifest as read_engine_manifest

    manifest = read_engine_manifest(folder)
    return manifest.precision, manifest.export_folder


def open_runtime(
    folder: str | Path,
    backend: str = "auto",
    precision: str | None = None,
    threads: int | None = None,
    max_batch: int | None = None,
    cuda_graph: bool = False,
) -> Runtime:
    """`cuda_graph` captures each step graph in a CUDA graph (native TensorRT backend only)."""
    folder = Path(folder)
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}", f"choose from {', '.join(BACKENDS)}")
    if cuda_graph and backend.startswith("ort-"):
        raise UsageError("--cuda-graph applies to the native TensorRT backend only", "omit it, or use --backend trt with an engine folder")
    kind = folder_kind(folder)
    skipped: list[str] = []

    if kind == "engine":
        engine_precision, export_folder = _engine_precision(folder)
        if precision is not None and precision != engine_precision:
            raise ConfigError(
                f"{folder} holds {engine_precision} engines, not {precision}",
                f"build them with `dq-edge build-engine {export_folder} --{precision}`",
            )
        if backend.startswith("ort-"):
            raise UsageError(
                f"{folder} is a TensorRT engine folder; --backend {backend} runs ONNX files",
                f"pass its export folder instead: --engine {export_folder}",
            )
        try:
            trt = _open_trt(folder, engine_precision, cuda_graph)
        except BackendUnavailableError as exc:
            if backend == "trt" or not Path(export_folder).is_dir():
                raise
            skipped.append(f"trt: {exc.message}" + (" (--cuda-graph ignored)" if cuda_graph else ""))
            opened = open_runtime(export_folder, "auto", engine_precision, threads, max_batch)
            opened.skipped = skipped + opened.skipped
            opened.reason = f"{opened.reason}; engine folder {folder} fell back to its export {export_folder}"
            return opened
        if trt.layout is None:
            raise ConfigError(f"{folder} was built without a transformer; nothing to generate", "build engines from a full model's export")
        return Runtime(trt, kind, folder, engine_precision, trt.layout, "native TensorRT engines", skipped)

    from dq_edge.export.manifest import read_manifest

    precision = _choose_precision(list(read_manifest(folder).get("precisions", {})), precision, folder)
    if backend == "trt":
        raise BackendUnavailableError(
            f"--backend trt needs a TensorRT engine folder; {folder} is an ONNX export",
            f"run `dq-edge build-engine {folder} --{precision}` on the GPU machine and pass its output, or use --backend ort-cpu",
        )
    runs_on = precisions.get(precision).backends
    if backend != "auto" and backend not in runs_on:
        raise UsageError(f"{precision} graphs do not run on {backend}", f"use a backend of {', '.join(runs_on)}, or another precision")
    if backend != "auto":
        opened = _open_ort(folder, backend, precision, threads, max_batch)
        return Runtime(opened, kind, folder, precision, opened.layout, f"requested --backend {backend}")

    skipped.append(
        "trt: an ONNX export folder (build engines with `dq-edge build-engine` to use native TensorRT)"
        + (" (--cuda-graph ignored)" if cuda_graph else "")
    )
    for candidate in ORT_ORDER:
        if candidate not in runs_on:
            skipped.append(f"{candidate}: does not run {precision} graphs")
            continue
        try:
            opened = _open_ort(folder, candidate, precision, threads, max_batch)
        except BackendUnavailableError as exc:
            skipped.append(f"{candidate}: {exc.message}")
            continue
        reason = f"auto: {candidate} is the first available of trt, {', '.join(ORT_ORDER)}"
        return Runtime(opened, kind, folder, precision, opened.layout, reason, skipped)
    raise BackendUnavailableError("no ONNX Runtime provider could open the graphs", "pip install onnxruntime")
