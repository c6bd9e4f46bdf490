"""The serving adapter without a server (per-row seeds, per-request rejection, grouping), the
model repository `dq-edge export-triton` writes, and that repository on the bundled
`tritonserver` binary."""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from runtime_fixtures import class_export

from dq_edge.cli.main import main
from dq_edge.errors import InputError
from dq_edge.serve.engine import ServeEngine, describe
from dq_edge.serve.server import platform_unsupported_reason


@pytest.fixture(scope="module")
def engine() -> ServeEngine:
    return ServeEngine.open(class_export(), backend="ort-cpu", threads=1)


def request(classes, seeds, **optional) -> dict[str, np.ndarray]:
    rows = len(seeds)
    inputs = {"CLASS_ID": np.array(classes, np.int64).reshape(rows, 1), "SEED": np.array(seeds, np.int64).reshape(rows, 1)}
    for name, value in optional.items():
        dtype = np.int64 if name == "TOP_K" else np.float32
        inputs[name] = np.full((rows, 1), value, dtype=dtype)
    return inputs


def test_rows_of_a_batch_match_batches_of_one(engine):
    together = engine.serve([request([0, 2, 1], [11, 12, 13])])[0]
    for row, (cls, seed) in enumerate(((0, 11), (2, 12), (1, 13))):
        alone = engine.serve([request([cls], [seed])])[0]
        n = int(alone["LENGTH"][0, 0])
        assert int(together["LENGTH"][row, 0]) == n
        assert np.array_equal(together["TOKENS"][row, :, :n], alone["TOKENS"][0, :, :n])
        assert np.array_equal(together["IMAGE"][row], alone["IMAGE"][0])


@pytest.mark.parametrize(
    "bad, pattern",
    [
        (request([7], [1]), r"class id 7 is out of range for this model \(0\.\.2\)"),
        (request([1], [-4]), r"SEED must be >= 0"),
        ({"CLASS_ID": np.zeros((1, 1), np.int64)}, r"input SEED is missing"),
        ({"SEED": np.zeros((1, 1), np.int64)}, r"input CLASS_ID is missing"),
        ({"CLASS_ID": np.zeros((2, 1), np.int64), "SEED": np.zeros((1, 1), np.int64)}, r"CLASS_ID has shape \[2, 1\]"),
        (request([1], [1], TOP_P=1.5), r"top-p must be in \(0, 1\]"),
        (request([1], [1], TOP_K=0), r"top-k must be an integer >= 1"),
        (request([1], [1], CFG_SCALE=float("nan")), r"cfg-scale must be a finite number > 0"),
    ],
)
def test_a_bad_request_is_rejected_alone(engine, bad, pattern):
    good = request([1], [9])
    results = engine.serve([good, bad])
    assert isinstance(results[1], InputError)
    assert re.search(pattern, results[1].one_line())
    alone = engine.serve([good])[0]
    assert np.array_equal(results[0]["IMAGE"], alone["IMAGE"])


def test_rows_with_different_sampling_run_in_their_own_group(engine):
    mixed = engine.serve([request([1], [4], TEMPERATURE=0.5), request([1], [4], TEMPERATURE=1.5), request([1], [4])])
    cold = engine.serve([request([1], [4], TEMPERATURE=0.5)])[0]
    assert np.array_equal(mixed[0]["TOKENS"], cold["TOKENS"])
    assert all(out["IMAGE"].shape[0] == 1 for out in mixed)


def test_guided_rows_are_split_to_fit_the_exported_batch(engine):
    assert engine.backend.max_batch == 4  # guidance doubles the rows: 3 images need 2 generations
    out = engine.serve([request([0, 1, 2], [1, 2, 3], CFG_SCALE=2.0)])[0]
    assert out["IMAGE"].shape[0] == 3 and out["LENGTH"].min() >= 4


def test_export_triton_writes_a_repository(tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["export-triton", "--engine", str(class_export()), "--out", str(repo), "--instances", "2", "--max-batch", "3"]) == 0
    config = (repo / "dq_edge" / "config.pbtxt").read_text()
    assert 'name: "dq_edge"' in config and "max_batch_size: 3" in config and "count: 2" in config
    size = describe(class_export()).image_size
    assert 'name: "CFG_SCALE"' in config and f"dims: [ {size}, {size}, 3 ]" in config
    assert (repo / "dq_edge" / "1" / "engine" / "manifest.json").is_file()
    assert "TritonPythonModel" in (repo / "dq_edge" / "1" / "model.py").read_text()
    assert main(["export-triton", "--engine", str(class_export()), "--out", str(repo)]) == 2  # exists: kept (a usage error)
    assert main(["export-triton", "--engine", str(class_export()), "--out", str(tmp_path / "r2"), "--max-batch", "9"]) == 2
    assert "outside 1..4" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


def test_server_environment_puts_this_pythons_libdir_first():
    pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed")
    from dq_edge.serve.server import server_environment

    env = server_environment({"LD_LIBRARY_PATH": "/elsewhere", "PATH": "/usr/bin"})
    paths = env["LD_LIBRARY_PATH"].split(os.pathsep)
    libdir = sysconfig.get_config_var("LIBDIR")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if libdir and (Path(libdir) / f"libpython{version}.so.1.0").exists():
        assert paths[0] == libdir
    assert paths[-1] == "/elsewhere" and any(p.endswith("nvidia_pytriton.libs") for p in paths)
    assert str(Path(__file__).resolve().parents[1]) in env["DQ_EDGE_PYTHONPATH"].split(os.pathsep)


@pytest.mark.skipif(platform_unsupported_reason() is not None, reason=f"PyTriton cannot run here: {platform_unsupported_reason()}")
def test_repository_runs_on_the_bundled_tritonserver(tmp_path):
    import tritonclient.http as http

    from dq_edge.serve.launcher import free_ports
    from dq_edge.serve.server import Endpoints, TritonProcess, prepare_server, server_command, server_environment

    repo = tmp_path / "repo"
    assert main(["export-triton", "--engine", str(class_export()), "--out", str(repo), "--backend", "ort-cpu", "--threads", "1"]) == 0
    http_port, grpc_port, metrics_port = free_ports(3)
    endpoints = Endpoints(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port)  # default host
    command = server_command(prepare_server(tmp_path / "ws"), repo, endpoints, exit_timeout_s=30, verbose=False)
    assert f"--model-repository={repo}" in command
    for endpoint in ("http", "grpc", "metrics"):  # loopback unless told otherwise
        assert f"--{endpoint}-address=127.0.0.1" in command
    server = TritonProcess(command, server_environment(), endpoints)
    try:
        server.wait_ready(300)
        client = http.InferenceServerClient(endpoints.http.removeprefix("http://"), network_timeout=300.0)
        inputs = [http.InferInput(name, [2, 1], "INT64") for name in ("CLASS_ID", "SEED")]
        inputs[0].set_data_from_numpy(np.array([[0], [2]], np.int64))
        inputs[1].set_data_from_numpy(np.array([[5], [6]], np.int64))
        image = client.infer("dq_edge", inputs).as_numpy("IMAGE")
        client.close()
        size = describe(class_export()).image_size
        assert image.shape == (2, size, size, 3) and image.dtype == np.uint8
    finally:
        server.stop()
        assert server.wait() == 0
