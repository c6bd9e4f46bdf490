"""A loaded graph's real IO against the spec its manifest recorded.

The manifest's dims and token layout are checked against each other by the schema; this
catches a manifest whose numbers agree with each other but not with the ONNX file it names
(e.g. both edited to claim fewer codes): the session's static output sizes must be the ones
the runtime will sample from. Torch-free, onnx-free: it reads what an ONNX Runtime session
reports (`session.get_outputs()`: name + shape with ints for static dims).
"""

from __future__ import annotations

from typing import Iterable, Protocol

from dq_edge.errors import ArtifactMismatchError
from dq_edge.graph_io import GraphSpec


class NodeArgLike(Protocol):
    name: str
    shape: list


def check_graph_outputs(graph_file: str, outputs: Iterable[NodeArgLike], spec: GraphSpec, hint: str) -> None:
    have = {o.name: list(o.shape or []) for o in outputs}
    for t in spec.outputs:
        if t.name not in have:
            raise ArtifactMismatchError(f"{graph_file} has no output {t.name!r} (it has {', '.join(sorted(have))})", hint)
        shape = have[t.name]
        if len(shape) != len(t.dims):
            raise ArtifactMismatchError(f"{graph_file} output {t.name} has rank {len(shape)}, the manifest says {len(t.dims)}", hint)
        for axis, (real, want) in enumerate(zip(shape, t.dims)):
            if isinstance(real, int) and isinstance(want, int) and real != want:
                raise ArtifactMismatchError(
                    f"{graph_file} output {t.name} has size {real} on axis {axis}, its manifest says {want} "
                    "(the manifest's token layout or dims do not belong to this graph)",
                    hint,
                )
