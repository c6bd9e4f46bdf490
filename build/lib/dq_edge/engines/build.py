"""Build TensorRT engines from a verified export: the TensorRT calls and nothing else.

What to build (graphs, profiles, names, network typing) is decided in `dq_edge.engines.plan`;
the folder's manifest is written by `dq_edge.engines.manifest`. Works with TensorRT 10.3
(Jetson JetPack 6) and TensorRT 10.x / 11.x on x86: the network is strongly typed, so the
precision comes from the tensor types of the ONNX file (fp16 tensors, explicit Q/DQ for int8).
"""

from __future__ import annotations

import importlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dq_edge.atomic import atomic_dir, sha256_file, write_bytes
from dq_edge.engines.manifest import MANIFEST_NAME, engine_entry, make_manifest, reusable_engines, write_manifest
from dq_edge.engines.plan import BuildOptions, ExportSource, GpuTarget, GraphPlan, check_request, make_plan, network_typing
from dq_edge.engines_probe import gpu_unavailable_reason
from dq_edge.errors import BackendUnavailableError, ConfigError, DQEdgeError, InputError

ORT_CPU_HINT = "on this machine run `dq-edge run --engine {export} --backend ort-cpu` instead"


@dataclass(frozen=True)
class BuildReport:
    folder: Path
    manifest: Path
    built: dict[str, Path]  # graph -> plan file built now
    kept: tuple[str, ...]  # graphs whose existing engines were kept (partial `--only` build)
    target: GpuTarget
    strongly_typed: bool
    dropped: tuple[str, ...] = ()  # stale plan files of an earlier build that were removed


def import_tensorrt(export_folder: Path | str = "EXPORT_DIR") -> Any:
    """TensorRT and a CUDA device, or one line naming what is missing and what to run instead."""
    reason = gpu_unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"cannot build TensorRT engines: {reason}", ORT_CPU_HINT.format(export=export_folder))
    return importlib.import_module("tensorrt")


MIN_TENSORRT = (10, 1)  # strongly typed networks + device_memory_size_v2 / set_device_memory(ptr, size)


def check_tensorrt_version(version: str) -> None:
    """TensorRT < 10.1 lacks what the runtime needs (user-managed context memory of a given
    size, 10.1; strongly typed networks, 9.x) and its parser casts int64 IO to int32: refuse it
    instead of building engines the runtime would feed bytes of the wrong width."""
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if major_minor < MIN_TENSORRT:
        raise BackendUnavailableError(
            f"TensorRT {version} is too old for dq-edge (needs >= {'.'.join(map(str, MIN_TENSORRT))})",
            "install TensorRT 10.x (pip install 'dq-edge[cuda12]') or use JetPack 6 (TensorRT 10.3)",
        )


def current_target(trt: Any) -> GpuTarget:
    from dq_edge.device import open_device  # noqa: PLC0415 - needs cuda-python or pycuda

    dev = open_device()
    return GpuTarget(str(trt.__version__), dev.name, dev.compute_capability)


def _logger(trt: Any) -> Any:
    sev = trt.ILogger.Severity
    keep = tuple(getattr(sev, n) for n in ("INTERNAL_ERROR", "ERROR", "WARNING") if hasattr(sev, n))

    class CollectingLogger(trt.ILogger):
        """Keeps warnings and errors so a failed build can say why in one line."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in keep:  # membership: TensorRT's Severity enum does not promise ordering
                self.messages.append(str(msg))

    return CollectingLogger()


def _parse(trt: Any, builder: Any, logger: Any, plan: GraphPlan, flags: int) -> Any:
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx_file)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise ConfigError(
            f"TensorRT {trt.__version__} cannot parse {plan.onnx_file.name}: {errors or 'unknown error'}",
            "run `dq-edge check EXPORT_DIR` for the TensorRT-readiness report",
        )
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    expected = {t.name for t in plan.spec.inputs}
    if names != expected:
        raise ConfigError(
            f"{plan.onnx_file.name} has inputs {sorted(names)}, the graph spec says {sorted(expected)}",
            "re-run `dq-edge export` with this dq-edge version",
        )
    return network, parser  # the parser must outlive the network's use


def _config(trt: Any, builder: Any, options: BuildOptions, plan: GraphPlan, flag_names: tuple[str, ...], cache_blob: bytes,
            warn: Callable[[str], None]) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    config.builder_optimization_level = options.opt_level
    for name in flag_names:  # only on TensorRT without strongly typed networks
        config.set_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in plan.profile.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    _set_timing_cache(config, cache_blob, warn)
    return config


def _set_timing_cache(config: Any, blob: bytes, warn: Callable[[str], None]) -> None:
    """A cache from another GPU / TensorRT version, or a corrupt file, is refused by TensorRT:
    `setTimingCache` "return[s] true if set successfully, false otherwise" and reports a
    failure "if the CUDA device property in the provided cache is different from current
    environment" (NvInfer.h, v10.3). Then start from a fresh cache instead of failing."""
    try:  # a corrupt blob may also yield no cache object at all (then set_timing_cache(None) raises)
        cache = config.create_timing_cache(blob) if blob else None
        if cache is not None and config.set_timing_cache(cache, False) is not False:  # False: no mismatch ignored
            return
    except (TypeError, RuntimeError, ValueError):
        pass
    if blob:
        warn("TensorRT refused the timing cache (another GPU, TensorRT version or a damaged file): starting a fresh one")
    fresh = config.create_timing_cache(b"")
    if fresh is None or config.set_timing_cache(fresh, False) is False:
        raise DQEdgeError("TensorRT could not create an empty timing cache", "retry without --timing-cache")


def _cache_bytes(config: Any, previous: bytes) -> bytes:
    cache = config.get_timing_cache()  # None when no cache is set (pyCoreDoc.h, get_timing_cache)
    return bytes(cache.serialize()) if cache is not None else previous


TRTEXEC_INPUTS = "trtexec_inputs"


def _trtexec_inputs(folder: Path, plan: GraphPlan, source: ExportSource) -> str:
    """Valid inputs for trtexec (token ids inside the vocabulary, a real `step`): trtexec's
    random int64 data would index out of range in the step graphs' Gathers. The files live in
    the engine folder; the command runs from there."""
    import numpy as np  # noqa: PLC0415

    from dq_edge.engines.compare import make_feed  # noqa: PLC0415
    from dq_edge.engines.plan import trtexec_command  # noqa: PLC0415

    feed = make_feed(plan.spec, source, source.max_batch, np.random.default_rng(0))
    paths = {}
    for name, value in feed.items():
        rel = Path(TRTEXEC_INPUTS) / plan.name / f"{name}.bin"
        write_bytes(folder / rel, np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes())
        paths[name] = rel.as_posix()
    shapes = {n: tuple(v.shape) for n, v in feed.items() if any(not isinstance(d, int) for d in plan.spec.input(n).dims)}
    return trtexec_command(plan.engine_file, shapes, paths)


def check_out_folder(out: Path) -> None:
    """`--out` is new, empty, or an engine folder: never replace a folder of other files."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_NAME).is_file())):
        raise InputError(f"{out} exists and is not an engine folder", "pass a new folder to --out, or an engine folder to update")


def _carry_over(old: Path, new: Path, keep_plans: set[str]) -> list[str]:
    """Hard-link (copy across file systems) what an updated engine folder keeps: the engines
    still valid for this build and any other file a user put there. Files rebuilt now are
    replaced in `new`, never in `old`. Returns the stale plan files left behind."""
    dropped: list[str] = []
    if not old.is_dir():
        return dropped
    for item in old.iterdir():
        if item.name == MANIFEST_NAME:
            continue
        if item.suffix == ".plan" and item.name not in keep_plans:
            dropped.append(item.name)  # another TensorRT / GPU / precision: superseded by this build
            continue
        if item.is_dir():
            shutil.copytree(item, new / item.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, new / item.name)
    return sorted(dropped)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_engines(
    source: ExportSource,
    options: BuildOptions,
    out: Path,
    on_event: Callable[[str], None] = lambda _msg: None,
) -> BuildReport:
    """Build the engines into a temp sibling of `out` and swap it in at the end: an interrupted or
    failed build leaves the previous engine folder as it was."""
    out = Path(out)
    max_batch, _ = check_request(source, options)  # bad flags fail before the TensorRT check
    check_out_folder(out)
    trt = import_tensorrt(source.folder)
    check_tensorrt_version(str(trt.__version__))
    target = current_target(trt)
    typing = network_typing(target.tensorrt_version, hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"), options.precision)
    plans = make_plan(source, options, target)
    flags = (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) if typing.creation_flag else 0
    cache_path = options.timing_cache
    cache_blob = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    manifest = make_manifest(source, options, target, typing, max_batch, {})
    reusable = reusable_engines(out, manifest)

    logger = _logger(trt)
    builder = trt.Builder(logger)
    built: dict[str, Path] = {}
    entries: dict[str, dict] = {}
    with atomic_dir(out, overwrite=True) as tmp:
        keep_plans = {e["file"] for g, e in reusable.items() if g not in {p.name for p in plans}}
        dropped = _carry_over(out, tmp, keep_plans)
        for plan in plans:
            on_event(f"building {plan.engine_file} from {plan.onnx_file.name}")
            network, _parser = _parse(trt, builder, logger, plan, flags)
            config = _config(trt, builder, options, plan, typing.builder_flags, cache_blob, on_event)
            serialized = builder.build_serialized_network(network, config)
            if serialized is None:
                tail = " | ".join(logger.messages[-3:]) or "no message from TensorRT"
                raise DQEdgeError(
                    f"TensorRT failed to build {plan.name}: {tail}",
                    "retry with a larger --workspace or a lower --opt-level; `dq-edge check EXPORT_DIR` lists unsupported ops",
                )
            write_bytes(tmp / plan.engine_file, bytes(serialized))  # replaces a carried-over link, not the old file
            del serialized  # no host copy of the weights lingers (Jetson: CPU and GPU share the DRAM)
            cache_blob = _cache_bytes(config, cache_blob)
            built[plan.name] = out / plan.engine_file
            entries[plan.name] = engine_entry(plan, sha256_file(tmp / plan.engine_file))
            entries[plan.name]["trtexec"] = _trtexec_inputs(tmp, plan, source)
        kept = {g: e for g, e in reusable.items() if g not in entries}
        manifest["engines"] = {**kept, **entries}
        write_manifest(tmp, manifest)
    if cache_path:
        write_bytes(cache_path, cache_blob)
    return BuildReport(out, out / MANIFEST_NAME, built, tuple(kept), target, typing.strongly_typed, tuple(dropped))
