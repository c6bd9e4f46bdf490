"""Store each distinct weight tensor of one precision once: ONNX external data in one shared file.

`transformer_prefill` runs both transformer stacks, so it holds every weight the two step graphs
hold again (fp32 of the shipped model: 17.8 MB of its 17.9 MB). After the graphs of a precision
are written, `share_weights` finds the initializers (of at least MIN_SHARED_BYTES) whose dtype,
shape and bytes occur in two or more graphs, writes each such tensor once into
`weights.<precision>.bin` beside the graphs and points every graph's copy at it with ONNX's
external-data fields (`location`, `offset`, `length`; onnx.external_data_helper). Everything
else stays inside its graph, so a graph that shares nothing is unchanged and a precision whose
graphs share nothing gets no shared file. ONNX Runtime, TensorRT's parser, `onnx.load` and
`onnx.checker` resolve `location` relative to the graph file, so the folder stays relocatable.

The manifest lists the shared file with its sha256 (`precisions.<p>.weights`) and the runtime
verifies it once per run, like each graph file (dq_edge/artifact/export.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import onnx
from onnx import external_data_helper, numpy_helper

from dq_edge.atomic import sha256_file

MIN_SHARED_BYTES = 1024  # smaller tensors (shape constants, biases of tiny layers) stay inline
ALIGN = 64  # offsets of the shared file: SIMD-friendly, costs at most 63 bytes per tensor


def weights_file_name(precision: str) -> str:
    return f"weights.{precision}.bin"


@dataclass(frozen=True)
class SharedWeights:
    """What `share_weights` wrote for one precision (the manifest's `weights` entry)."""

    file: str
    sha256: str
    graphs: list[str]  # the graphs with initializers in the file
    tensors: int
    bytes_saved: int

    def manifest_entry(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "graphs": self.graphs}


def _raw_bytes(tensor: onnx.TensorProto) -> bytes:
    """The tensor's little-endian bytes, whether the exporter used raw_data or a typed field."""
    if tensor.HasField("raw_data"):
        return tensor.raw_data
    return numpy_helper.from_array(numpy_helper.to_array(tensor)).raw_data


def _key(tensor: onnx.TensorProto, data: bytes) -> tuple[int, tuple[int, ...], str]:
    return tensor.data_type, tuple(tensor.dims), hashlib.sha256(data).hexdigest()


def _point_at(tensor: onnx.TensorProto, data: bytes, location: str, offset: int, length: int) -> None:
    """Make `tensor` refer to `length` bytes at `offset` of `location` instead of holding them."""
    for typed in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        tensor.ClearField(typed)
    tensor.raw_data = data  # set_external_data insists on raw_data being present
    external_data_helper.set_external_data(tensor, location, offset, length)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL


def _inline_initializers(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [t for t in model.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]


def share_weights(folder: Path, files: dict[str, Path], precision: str) -> SharedWeights | None:
    """Rewrite the graphs `files` (graph name -> ONNX file inside `folder`) of one precision so
    tensors they have in common live once in `folder/weights.<precision>.bin`. Returns None (and
    changes nothing) when no tensor occurs in two graphs."""
    models = {name: onnx.load(str(path), load_external_data=False) for name, path in sorted(files.items())}
    owners: dict[tuple, set[str]] = {}
    for name, model in models.items():
        for t in _inline_initializers(model):
            data = _raw_bytes(t)
            if len(data) >= MIN_SHARED_BYTES:
                owners.setdefault(_key(t, data), set()).add(name)
    shared = {key for key, graphs in owners.items() if len(graphs) > 1}
    if not shared:
        return None
    location = weights_file_name(precision)
    offsets: dict[tuple, tuple[int, int]] = {}  # key -> (offset, length) in the shared file
    users: set[str] = set()
    saved = 0
    with open(folder / location, "wb") as out:
        for name, model in models.items():  # sorted by graph name: the same export writes the same file
            for t in _inline_initializers(model):
                data = _raw_bytes(t)
                key = _key(t, data) if len(data) >= MIN_SHARED_BYTES else None
                if key not in shared:
                    continue
                if key in offsets:
                    saved += len(data)
                else:
                    offset = -(-out.tell() // ALIGN) * ALIGN  # round up to ALIGN
                    out.write(b"\0" * (offset - out.tell()))
                    out.write(data)
                    offsets[key] = (offset, len(data))
                _point_at(t, data, location, *offsets[key])
                users.add(name)
    for name in sorted(users):
        path = files[name]
        path.write_bytes(models[name].SerializeToString())
        onnx.checker.check_model(str(path), full_check=False)  # the external references resolve inside the folder
    return SharedWeights(location, sha256_file(folder / location), sorted(users), len(offsets), saved)


def share_export_weights(
    folder: Path, graphs: dict[str, dict[str, Any]], file_name: Callable[[str, str], str]
) -> dict[str, SharedWeights]:
    """`share_weights` for every precision of an export being built in `folder`
    (`graphs[precision][graph]`, files named by `file_name(graph, precision)`)."""
    written = {}
    for precision, entries in graphs.items():
        files = {graph: folder / file_name(graph, precision) for graph in entries}
        result = share_weights(folder, files, precision)
        if result is not None:
            written[precision] = result
    return written


def add_to_manifest(manifest: dict[str, Any], shared: dict[str, SharedWeights]) -> None:
    for precision, result in shared.items():
        manifest["precisions"][precision]["weights"] = result.manifest_entry()
