"""TrtBackend against the audit's findings, on the simulated device (tests/engines_fakes.py):
a failed CUDA-graph capture falls back to plain enqueue (H3), engine IO is checked at load (L1),
close releases buffers, events, stream and graphs (L6), pycuda cannot capture (L5)."""

from __future__ import annotations

import numpy as np
import pytest
from engines_fakes import DIMS, FakeDevice, FakeLoader, fake_engine_folder, fake_export, toy_compute
from test_engines_backend import make_backend, run_steps

from dq_edge.engines.trt_backend import TrtBackend
from dq_edge.errors import ArtifactMismatchError, BackendUnavailableError
from dq_edge.graph_io import graph_specs


def _backend(tmp_path, **loader_kwargs):
    folder = fake_engine_folder(tmp_path / "engines", fake_export(tmp_path / "export"))
    dev = FakeDevice()
    loader = FakeLoader(dev, graph_specs(DIMS, "fp32", 4), compute=lambda g, x: toy_compute(g, x, DIMS, np.float32), **loader_kwargs)
    return folder, dev, loader


def test_failed_capture_ends_capture_and_falls_back_to_enqueue(tmp_path):
    """H3: TensorRT's enqueue may return False inside a capture (sampleInference.cpp). The
    capture is ended and its error cleared (FakeDevice would refuse every later call on a stream
    left capturing), the content graph runs with plain enqueues, the numbers stay right."""
    folder, dev, loader = _backend(tmp_path, fail_capture=("transformer_content_step",))
    backend = TrtBackend(folder, device=dev, loader=loader, cuda_graph=True)
    run_steps(backend, batch=3, steps=5)  # asserts the logits at every step
    assert not dev.capturing and dev.count("abort_capture") == 1
    assert set(backend.uncapturable) == {"transformer_content_step"}
    assert "transformer_position_step" in backend._graph_exec  # the other graph is still captured
    run_steps(backend, batch=3, steps=3)
    assert dev.count("abort_capture") == 1  # not retried for the same graph


def test_engine_io_types_are_checked_at_load(tmp_path):
    """L1: an engine whose `step` input is int32 (a weakly typed or int64-casting build) is
    refused before a byte is written into it."""
    folder, dev, loader = _backend(tmp_path, io_override={"transformer_position_step": {"step": ("input", "int32", (1,))}})
    with pytest.raises(ArtifactMismatchError, match="step is input int32.*expects input int64") as info:
        TrtBackend(folder, device=dev, loader=loader)
    assert "dq-edge build-engine" in info.value.hint
    folder, dev, loader = _backend(tmp_path / "b", io_override={"decoder": {"image": ("output", "float32", (-1, 3, 8, 8))}})
    with pytest.raises(ArtifactMismatchError, match="decoder: image"):
        TrtBackend(folder, device=dev, loader=loader)


def test_close_releases_everything(tmp_path):
    backend, dev, _ = make_backend(tmp_path, cuda_graph=True)
    run_steps(backend, batch=2, steps=4)
    assert dev.live()["graphs"] == 2 and dev.live()["events"] > 0
    backend.close()
    assert dev.live() == {"device": 0, "host": 0, "streams": 0, "events": 0, "graphs": 0}
    backend.close()  # idempotent


def test_pycuda_device_with_cuda_graph_fails_at_construction(tmp_path):
    """L5: the error comes when the backend is made, not at the first captured step."""
    folder, dev, loader = _backend(tmp_path)
    dev.can_capture = False
    with pytest.raises(BackendUnavailableError, match="cuda-python"):
        TrtBackend(folder, device=dev, loader=loader, cuda_graph=True)
    TrtBackend(folder, device=dev, loader=loader).close()  # without graphs it works
