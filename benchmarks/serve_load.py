"""Load test of `dq-edge serve` against `dq-edge run` on the same engine and batch, in one run.

    python -m dq_edge export dq_edge/assets/model --out /tmp/serve-export --precision fp32
    python benchmarks/serve_load.py --engine /tmp/serve-export --batch 8 \
        --clients 1,8,32 --durations 60,60,300 --label shipped-fp32

Loopback only, bounded: each level runs for its duration (then waits for the requests in flight)
and stops early at --max-requests. Per level: requests/s, images/s, latency p50/p95/p99, failed
and lost requests (sent minus answered), and the RSS of the server's whole process tree (dq-edge
serve, tritonserver, the Python backend stubs) at the start and end of the level (and every 15 s).
A warm-up runs first at the largest client count (two requests per client), so that the RSS
figures start from a server that has already allocated its buffers for the largest batch and its
connection and queue pools for the largest concurrency (a first 32-client burst adds ~30 MB once:
measured 2026-12-01, flat for the 300 s after). `dq-edge run`
(same engine, --backend ort-cpu, --batch B) is measured before and after the load; the serving
overhead is serve images/s over the mean run images/s. Writes
benchmarks/results/serve/serve-load-<label>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "serve"
TARGETS = {"failed": 0, "lost": 0, "rss_growth_pct_max": 5.0, "throughput_ratio_min": 0.8}


def run_baseline(engine: str, batch: int, num: int, seed: int) -> dict:
    """Images/s of `dq-edge run` (generation wall time from its summary.json)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [
            sys.executable, "-m", "dq_edge", "run", "--engine", engine, "--backend", "ort-cpu", "--num", str(num),
            "--batch", str(batch), "--seed", str(seed), "--out", str(out), "--quiet",
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        summary = json.loads((out / "summary.json").read_text())
    return {"images": num, "batch": batch, "images_per_second": summary["images_per_second"],
            "wall_seconds": summary["wall_seconds"], "command": shlex.join(["dq-edge", *command[3:]])}


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def load_level(url: str, clients: int, duration_s: float, max_requests: int, n_classes: int, server_pid: int) -> dict:
    import tritonclient.http as http

    from dq_edge.serve.launcher import process_tree_rss

    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"sent": 0, "ok": 0, "failed": 0, "images": 0}
    errors: list[str] = []
    start = time.monotonic()
    deadline = start + duration_s

    def client(index: int) -> None:
        connection = http.InferenceServerClient(url, connection_timeout=900.0, network_timeout=900.0)
        rng = np.random.default_rng(index)
        while time.monotonic() < deadline:
            with lock:
                if counts["sent"] >= max_requests:
                    return
                counts["sent"] += 1
                seed = counts["sent"]
            inputs = []
            for name, value in (("CLASS_ID", int(rng.integers(0, max(n_classes, 1)))), ("SEED", seed)):
                tensor = http.InferInput(name, [1, 1], "INT64")
                tensor.set_data_from_numpy(np.array([[value]], dtype=np.int64))
                inputs.append(tensor)
            outputs = [http.InferRequestedOutput("IMAGE", binary_data=True)]
            began = time.monotonic()
            try:
                reply = connection.infer("dq_edge", inputs, outputs=outputs)
                ok = reply.as_numpy("IMAGE").shape[0] == 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                ok = False
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
            with lock:
                latencies.append(time.monotonic() - began)
                counts["ok" if ok else "failed"] += 1
                counts["images"] += int(ok)
        connection.close()

    rss_series: list[tuple[float, float]] = []  # (seconds into the level, MB) every 15 s
    done = threading.Event()

    def sample_rss() -> None:
        while not done.wait(15.0):
            rss_series.append((round(time.monotonic() - start, 1), round(process_tree_rss(server_pid) / 2**20, 1)))

    rss_start = process_tree_rss(server_pid)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    sampler = threading.Thread(target=sample_rss)
    for thread in threads + [sampler]:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    done.set()
    sampler.join()
    rss_end = process_tree_rss(server_pid)
    return {
        "clients": clients, "duration_s": duration_s, "elapsed_s": round(elapsed, 2),
        "requests_sent": counts["sent"], "requests_ok": counts["ok"], "requests_failed": counts["failed"],
        "requests_lost": counts["sent"] - counts["ok"] - counts["failed"],
        "requests_per_second": round(counts["ok"] / elapsed, 4), "images_per_second": round(counts["images"] / elapsed, 4),
        "latency_s": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99)},
        "server_rss_mb": {"start": round(rss_start / 2**20, 1), "end": round(rss_end / 2**20, 1)},
        "rss_growth_pct": round(100.0 * (rss_end - rss_start) / rss_start, 2),
        "server_rss_mb_every_15s": rss_series,
        "errors": errors[:10],
    }


def versions(url: str) -> dict:
    import urllib.request
    from importlib.metadata import version

    with urllib.request.urlopen(url + "/v2") as reply:
        server = json.loads(reply.read())
    names = ("dq-edge", "onnxruntime", "numpy", "nvidia-pytriton", "tritonclient")
    return {"triton_server": server.get("version"), **{name: version(name) for name in names}}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def markdown(result: dict) -> str:
    lines = [
        f"# Serving load test: {result['label']}", "",
        f"Command: `{result['command']}`", "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, {result['machine']['platform']}. "
        f"{result['note']}", "",
        f"Load before: `{result['uptime_before']}`; after: `{result['uptime_after']}`", "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()), "",
        f"Engine: `{result['engine']}`, batch {result['batch']} (Triton max_batch_size = `dq-edge run --batch`), "
        f"backend ort-cpu, model instances 1.", "",
        "| clients | s | requests ok | failed | lost | req/s | images/s | p50 s | p95 s | p99 s | RSS start MB | RSS end MB | RSS growth % | serve / run |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in result["levels"]:
        lat = level["latency_s"]
        lines.append(
            f"| {level['clients']} | {level['elapsed_s']} | {level['requests_ok']} | {level['requests_failed']} | {level['requests_lost']} | "
            f"{level['requests_per_second']} | {level['images_per_second']} | {lat['p50']} | {lat['p95']} | {lat['p99']} | "
            f"{level['server_rss_mb']['start']} | {level['server_rss_mb']['end']} | {level['rss_growth_pct']} | {level['throughput_ratio']} |"
        )
    base = result["baseline"]
    lines += [
        "", f"`dq-edge run` at batch {result['batch']}: " + ", ".join(f"{b['images_per_second']} images/s" for b in base)
        + f" (before / after the load; mean {result['run_images_per_second']}). Command: `{base[0]['command']}`", "",
        f"Server RSS during the last level (s, MB): {result['levels'][-1]['server_rss_mb_every_15s']}", "",
        f"Server exit code after SIGTERM: {result['server_exit_code']}.", "",
        "Targets at the last level: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in result["targets_met"].items()), "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True, help="export folder (ONNX) to serve and run")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--durations", default="60,60,300", help="seconds per level")
    parser.add_argument("--max-requests", type=int, default=5000, help="per level")
    parser.add_argument("--run-images", type=int, default=24, help="images of each `dq-edge run` baseline")
    parser.add_argument("--label", default="shipped-fp32")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    durations = [float(d) for d in args.durations.split(",")]
    if len(clients) != len(durations):
        parser.error("--clients and --durations need the same number of entries")

    from dq_edge.serve.engine import describe
    from dq_edge.serve.launcher import ServeProcess

    info = describe(args.engine)
    result = {
        "label": args.label, "command": shlex.join(["python", "benchmarks/serve_load.py", *(argv or sys.argv[1:])]),
        "machine": machine(), "note": args.note, "engine": args.engine, "batch": args.batch,
        "uptime_before": uptime(), "baseline": [run_baseline(args.engine, args.batch, args.run_images, 0)], "levels": [],
    }
    server = ServeProcess(args.engine, ["--backend", "ort-cpu", "--max-batch", str(args.batch)])
    url = server.endpoints.http.removeprefix("http://")
    try:
        result["versions"] = versions(server.endpoints.http)
        # warm-up at the largest concurrency: ONNX Runtime's buffers for the largest batch and
        # Triton's pools for the most connections exist before any level measures the server's RSS
        most = max(clients)
        result["warm_up"] = load_level(url, most, 600.0, 2 * most, info.n_classes, server.pid)
        for count, duration in zip(clients, durations):
            level = load_level(url, count, duration, args.max_requests, info.n_classes, server.pid)
            result["levels"].append(level)
            print(json.dumps(level), flush=True)
    finally:
        result["server_exit_code"] = server.stop()
    result["baseline"].append(run_baseline(args.engine, args.batch, args.run_images, 1))
    result["uptime_after"] = uptime()
    run_rate = float(np.mean([b["images_per_second"] for b in result["baseline"]]))
    result["run_images_per_second"] = round(run_rate, 4)
    for level in result["levels"]:
        level["throughput_ratio"] = round(level["images_per_second"] / run_rate, 3)
    last = result["levels"][-1]
    result["targets"] = TARGETS
    result["targets_met"] = {
        "no failed requests": last["requests_failed"] == 0, "no lost requests": last["requests_lost"] == 0,
        "RSS growth < 5 %": last["rss_growth_pct"] < TARGETS["rss_growth_pct_max"],
        "serve >= 0.8x run": last["throughput_ratio"] >= TARGETS["throughput_ratio_min"],
        "clean exit": result["server_exit_code"] == 0,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"serve-load-{args.label}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"serve-load-{args.label}.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if all(result["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
