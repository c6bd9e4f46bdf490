import os

import pytest

# Keep the suite predictable on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_collection_modifyitems(config, items):
    """GPU tests run only where TensorRT and a CUDA device are present (`pytest -m gpu`)."""
    from dq_edge.engines_probe import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"GPU test: {reason}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # not `keywords`: that holds folder names too
            item.add_marker(skip)
