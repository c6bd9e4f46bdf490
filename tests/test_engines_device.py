"""The cuda-python device layer without a GPU: every runtime API it calls exists in the installed
cuda-python (names and enum members), and opening a device fails with one clear error.

Skips when cuda-python is not installed (it is in the `dev` extra). Whether the calls do the
right thing on a GPU is covered by tests/test_engines_gpu.py.
"""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

from dq_edge.engines import device as device_mod
from dq_edge.engines.device import _host_array
from dq_edge.errors import DQEdgeError

cudart = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python >= 12.6 is not installed")


def _runtime_chains(cls: type) -> set[tuple[str, ...]]:
    """Attribute chains read from `self._rt` in a class body, e.g. ("cudaMemcpyKind", "cudaMemcpyDeviceToDevice")."""
    chains = set()
    for node in ast.walk(ast.parse(inspect.getsource(cls))):
        if isinstance(node, ast.Attribute):
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            parts.reverse()
            if isinstance(cur, ast.Name) and cur.id == "self" and parts[0] == "_rt" and len(parts) > 1:
                chains.add(tuple(parts[1:]))
    return chains


def test_every_runtime_call_exists_in_cuda_python():
    chains = _runtime_chains(device_mod.CudaDevice)
    assert {("cudaMalloc",), ("cudaMemcpy2DAsync",), ("cudaGraphInstantiate",)} <= chains
    missing = []
    for chain in chains:
        obj = cudart
        for part in chain:
            if not hasattr(obj, part):
                missing.append(".".join(chain))
                break
            obj = getattr(obj, part)
    assert not missing, missing


@pytest.mark.parametrize(
    "name,params",
    [
        ("cudaMemcpy2DAsync", ["dst", "dpitch", "src", "spitch", "width", "height", "kind", "stream"]),
        ("cudaMemcpyAsync", ["dst", "src", "count", "kind", "stream"]),
        ("cudaGraphInstantiate", ["graph", "flags"]),
        ("cudaStreamBeginCapture", ["stream", "mode"]),
        ("cudaHostGetDevicePointer", ["pHost", "flags"]),
    ],
)
def test_argument_order_matches_the_calls(name, params):
    first_line = getattr(cudart, name).__doc__.splitlines()[0]  # e.g. "cudaMemcpyAsync(dst, src, size_t count, ...)"
    names = [a.strip().split(":")[0].split()[-1] for a in first_line[first_line.index("(") + 1 : first_line.rindex(")")].split(",")]
    assert names == params


def test_opening_a_device_without_gpu_is_one_clear_error():
    err, count = cudart.cudaGetDeviceCount()
    if int(err) == 0 and count > 0:
        pytest.skip("a CUDA device is present; tests/test_engines_gpu.py covers it")
    with pytest.raises(DQEdgeError, match="CUDA error"):
        device_mod.CudaDevice()


def test_host_array_views_the_given_memory():
    backing = np.arange(12, dtype=np.float32)
    view = _host_array(backing.ctypes.data, (3, 4), np.float32)
    view[1, 2] = -1
    assert backing[6] == -1 and view.shape == (3, 4)
