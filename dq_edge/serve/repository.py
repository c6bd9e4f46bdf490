"""Write a Triton model repository for model `dq_edge` (Python backend over dq_edge.runtime).

    REPO/dq_edge/config.pbtxt     IO from dq_edge/serve/protocol.py, dynamic batching, instances
    REPO/dq_edge/1/model.py       re-exports dq_edge.serve.python_backend.TritonPythonModel
    REPO/dq_edge/1/engine/        a copy of the export (or engine) folder, unless `link` is set:
                                  then config.pbtxt holds the folder's absolute path instead

`dq-edge serve` writes one into a temporary folder and starts Triton on it; `dq-edge
export-triton` writes one for the stock Triton container. The folder is written atomically.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from dq_edge.atomic import atomic_dir
from dq_edge.errors import UsageError
from dq_edge.serve.engine import ModelInfo
from dq_edge.serve.protocol import INPUTS, MODEL_NAME, OUTPUTS, output_dims

MODEL_PY = '''"""Triton Python backend model written by dq-edge; needs dq-edge installed in the server's
Python (see docs/serving.md)."""

import os
import sys

# `dq-edge serve` passes its own import path here: Triton's Python stub ignores PYTHONPATH
for _entry in reversed(os.environ.get("DQ_EDGE_PYTHONPATH", "").split(os.pathsep)):
    if _entry and _entry not in sys.path:
        sys.path.insert(0, _entry)

from dq_edge.serve.python_backend import TritonPythonModel  # noqa: E402,F401
'''


@dataclass(frozen=True)
class RepositoryOptions:
    backend: str = "auto"
    precision: str | None = None
    max_batch: int | None = None  # requests' rows per execute; default: the export's max batch
    instances: int = 1
    queue_delay_us: int = 5000  # how long the dynamic batcher waits to fill a batch
    threads: int | None = None
    link: bool = False  # point at the folder instead of copying it


def _tensor_block(decl, dims: list[int]) -> str:
    lines = [f'    name: "{decl.name}"', f"    data_type: {decl.triton_type}", f"    dims: [ {', '.join(map(str, dims))} ]"]
    if decl.optional:
        lines.append("    optional: true")
    return "  {\n" + "\n".join(lines) + "\n  }"


def config_pbtxt(info: ModelInfo, options: RepositoryOptions, engine: str) -> str:
    """The model's config.pbtxt (protobuf text format)."""
    max_batch = options.max_batch or info.max_batch
    inputs = []
    for decl in INPUTS:
        if decl.name == "CFG_SCALE" and not info.guidance:
            continue  # the model has no null class: guidance is impossible, so it is not an input
        if decl.name == "CLASS_ID" and info.n_classes == 0:
            continue  # unconditional model
        inputs.append(_tensor_block(decl, [1]))
    dims = output_dims(info.image_size)
    outputs = [_tensor_block(decl, dims[decl.name]) for decl in OUTPUTS]
    parameters = {
        "engine": engine,
        "backend": options.backend,
        "precision": options.precision or "",
        "threads": "" if options.threads is None else str(options.threads),
    }
    params = "\n".join(
        f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}' for key, value in parameters.items()
    )
    sep = ",\n"
    return (
        f'name: "{MODEL_NAME}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
        f"input [\n{sep.join(inputs)}\n]\noutput [\n{sep.join(outputs)}\n]\n"
        f"instance_group [ {{ count: {options.instances} kind: KIND_CPU }} ]\n"
        f"dynamic_batching {{ max_queue_delay_microseconds: {options.queue_delay_us} }}\n"
        f"{params}\n"
    )


def check_options(info: ModelInfo, options: RepositoryOptions) -> None:
    from dq_edge.runtime.session import BACKENDS

    if options.backend not in BACKENDS:
        raise UsageError(f"unknown backend {options.backend!r}", f"choose from {', '.join(BACKENDS)}")
    if options.instances < 1:
        raise UsageError(f"instances must be >= 1, got {options.instances}")
    if options.max_batch is not None and not 1 <= options.max_batch <= info.max_batch:
        raise UsageError(
            f"max batch {options.max_batch} is outside 1..{info.max_batch} (the export's maximum)",
            f"use a value up to {info.max_batch}, or re-export with a larger maximum batch",
        )
    if options.queue_delay_us < 0:
        raise UsageError(f"queue delay must be >= 0 microseconds, got {options.queue_delay_us}")


def write_repository(out: Path, engine: Path, info: ModelInfo, options: RepositoryOptions, overwrite: bool = False) -> Path:
    """Write the repository to `out` (atomically) and return it."""
    check_options(info, options)
    engine = Path(engine).resolve()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        version = tmp / MODEL_NAME / "1"
        version.mkdir(parents=True)
        if options.link:
            pointer = str(engine)
        else:
            shutil.copytree(engine, version / "engine")
            pointer = "engine"
        (version / "model.py").write_text(MODEL_PY)
        (tmp / MODEL_NAME / "config.pbtxt").write_text(config_pbtxt(info, options, pointer))
    return Path(out)
