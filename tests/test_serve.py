"""`dq-edge serve` for real: the bundled Triton server on free loopback ports, started once for
this module on the tiny class-conditional export (3 classes + a null class, max batch 4)."""

from __future__ import annotations

import http.client
import json
import re
import shlex
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from dq_edge.serve.protocol import example_body, infer_url
from dq_edge.serve.server import platform_unsupported_reason

REASON = platform_unsupported_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"PyTriton cannot run here: {REASON}")


@pytest.fixture(scope="module")
def server():
    from runtime_fixtures import class_export

    from dq_edge.serve.launcher import ServeProcess

    process = ServeProcess(class_export(), ["--backend", "ort-cpu", "--threads", "1", "--queue-delay-us", "20000"])
    yield process
    process.stop()


def infer(server, classes: list[int], seeds: list[int], **optional) -> dict[str, np.ndarray]:
    import tritonclient.http as triton_http

    rows = len(seeds)
    inputs = []
    for name, values, dtype, kind in (("CLASS_ID", classes, np.int64, "INT64"), ("SEED", seeds, np.int64, "INT64")) + tuple(
        (name, [value] * rows, np.float32, "FP32") for name, value in optional.items()
    ):
        tensor = triton_http.InferInput(name, [rows, 1], kind)
        tensor.set_data_from_numpy(np.asarray(values, dtype=dtype).reshape(rows, 1))
        inputs.append(tensor)
    client = triton_http.InferenceServerClient(server.endpoints.http.removeprefix("http://"), network_timeout=300.0)
    try:
        reply = client.infer("dq_edge", inputs)
        return {name: reply.as_numpy(name) for name in ("IMAGE", "TOKENS", "LENGTH")}
    finally:
        client.close()


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.status, reply.read().decode()


def test_banner_curl_line_works(server):
    argv = shlex.split(server.curl_line)
    body = json.loads(argv[argv.index("-d") + 1])
    assert body == example_body()
    if shutil.which("curl"):
        reply = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout)
    else:  # the same URL and body without the curl binary
        status, reply = post_json(argv[argv.index("POST") + 1], body)
        assert status == 200
    outputs = {o["name"]: o for o in reply["outputs"]}
    length = outputs["LENGTH"]["data"][0]
    assert outputs["TOKENS"]["shape"][:2] == [1, 3] and 4 <= length <= outputs["TOKENS"]["shape"][2]
    for endpoint in ("HTTP", "gRPC", "metrics"):
        assert endpoint in server.banner


def test_concurrent_requests_get_images_of_the_right_shape(server):
    results, errors = {}, []

    def call(i: int) -> None:
        try:
            results[i] = infer(server, [i % 3], [100 + i])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    many = infer(server, [0, 1, 2], [1, 2, 3])
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 6
    size = results[0]["IMAGE"].shape[1]
    for out in results.values():
        assert out["IMAGE"].shape == (1, size, size, 3) and out["IMAGE"].dtype == np.uint8
    assert many["IMAGE"].shape == (3, size, size, 3)
    assert many["TOKENS"].shape[:2] == (3, 3) and many["LENGTH"].shape == (3, 1)
    assert many["LENGTH"].max() == many["TOKENS"].shape[2]


def test_same_class_and_seed_give_the_same_image(server):
    first, second = infer(server, [1], [7]), infer(server, [1], [7])
    other = infer(server, [1], [8])
    assert np.array_equal(first["IMAGE"], second["IMAGE"]) and np.array_equal(first["TOKENS"], second["TOKENS"])
    assert not np.array_equal(first["TOKENS"], other["TOKENS"])


def test_rows_of_a_batch_match_single_requests(server):
    both = infer(server, [0, 2], [11, 12], TEMPERATURE=0.9)
    alone = infer(server, [2], [12], TEMPERATURE=0.9)
    n = int(alone["LENGTH"][0, 0])
    assert int(both["LENGTH"][1, 0]) == n
    assert np.array_equal(both["TOKENS"][1, :, :n], alone["TOKENS"][0, :, :n])
    assert np.array_equal(both["IMAGE"][1], alone["IMAGE"][0])


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"CLASS_ID": 3}, r"class id 3 is out of range"),
        ({"SEED": -1}, r"SEED must be >= 0"),
        ({"CLASS_ID": "FP32"}, r"data-type is 'FP32'"),
        ({"SEED": None}, r"missing required input"),
        ({"TEMPERATURE": -1.0}, r"temperature must be a finite number > 0"),
    ],
)
def test_bad_request_gets_400_and_the_next_one_succeeds(server, change, reason):
    body = example_body(class_id=1, seed=5)
    inputs = {i["name"]: i for i in body["inputs"]}
    for name, value in change.items():
        if value is None:
            del inputs[name]
        elif value == "FP32":
            inputs[name].update(datatype="FP32", data=[1.0])
        elif name in inputs:
            inputs[name]["data"] = [value]
        else:
            inputs[name] = {"name": name, "datatype": "FP32", "shape": [1, 1], "data": [value]}
    status, reply = post_json(infer_url(server.endpoints.http), {**body, "inputs": list(inputs.values())})
    assert status == 400
    assert re.search(reason, reply["error"]) and "\n" not in reply["error"]
    status, reply = post_json(infer_url(server.endpoints.http), example_body(class_id=1, seed=5))
    assert status == 200 and {o["name"] for o in reply["outputs"]} == {"LENGTH", "TOKENS"}


def test_health_metrics_and_grpc_answer(server):
    import tritonclient.grpc as grpc

    assert get(server.endpoints.http + "/v2/health/ready")[0] == 200
    status, text = get(server.endpoints.metrics)
    assert status == 200 and re.search(r'nv_inference_request_success\{model="dq_edge",version="1"\} [1-9]', text)
    client = grpc.InferenceServerClient(server.endpoints.grpc)
    inputs = [grpc.InferInput(name, [1, 1], "INT64") for name in ("CLASS_ID", "SEED")]
    for tensor, value in zip(inputs, (2, 3)):
        tensor.set_data_from_numpy(np.array([[value]], dtype=np.int64))
    image = client.infer("dq_edge", inputs).as_numpy("IMAGE")
    assert image.shape[0] == 1 and image.shape[3] == 3 and image.dtype == np.uint8
    assert np.array_equal(image, infer(server, [2], [3])["IMAGE"])


def pending_requests(server) -> int:
    text = get(server.endpoints.metrics)[1]
    match = re.search(r'nv_inference_pending_request_count\{model="dq_edge",version="1"\} (\d+)', text)
    return int(match.group(1)) if match else 0


def test_sigterm_finishes_in_flight_requests_then_exits_0(server):
    """Last in this module: stops the shared server once requests wait in Triton's queue."""
    replies: list[tuple[int, float]] = []

    def call(i: int) -> None:
        try:
            status, _ = post_json(infer_url(server.endpoints.http), example_body(class_id=i % 3, seed=200 + i))
        except (OSError, http.client.HTTPException):  # arrived while the server closed: never accepted
            status = 0
        replies.append((status, time.monotonic()))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    pending = 0
    while pending == 0 and time.monotonic() < deadline:
        pending = pending_requests(server)
    assert pending > 0, "no request was ever queued: the test cannot observe a shutdown with requests in flight"
    stopped_at = time.monotonic()
    assert server.stop() == 0
    for thread in threads:
        thread.join()
    answered_after_stop = [status for status, at in replies if at > stopped_at]
    assert answered_after_stop.count(200) >= pending  # the queued requests were answered, not dropped
