"""One token step (position step + content step) of ONNX file variants, side by side in one run.

    python benchmarks/step_variants.py FOLDER --tags fp32,w8,w8nh --threads 1,2 --spin 0,1 \
        [--batch 1] [--prefix 320] [--reps 5] [--json out.json]

FOLDER holds `transformer_position_step.<tag>.onnx` and `transformer_content_step.<tag>.onnx`
per tag (an export folder, or files quantized by hand such as heads-excluded variants); every
(tag, threads, spinning) combination is timed round-robin, so load changes on a shared machine
hit all of them alike. Used to decide the weight-only head policy and the ORT thread default
(docs/runtime.md, docs/export.md); the suite (run_suite.py) measures the shipped precisions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from dq_edge.bench.machine import machine_info, peak_rss_mib, utc_stamp
from dq_edge.bench.timing import Stats

GRAPHS = ("transformer_position_step", "transformer_content_step")


def session(path: Path, threads: int, spin: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", str(spin))
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def zero_feed(sess: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    """Zeros for every input, symbolic dims (batch) set to `batch`."""
    feed = {}
    for i in sess.get_inputs():
        shape = [batch if not isinstance(d, int) else d for d in i.shape]
        feed[i.name] = np.zeros(shape, np.int64 if i.type == "tensor(int64)" else np.float32)
    return feed


def one_token(pos, con, pfeed, cfeed) -> None:
    hidden = pos.run(["hidden"], pfeed)[0]
    cfeed["hidden"] = hidden
    con.run(["content_logits"], cfeed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--tags", default="fp32")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--spin", default="1", help="session.intra_op.allow_spinning values (1 = ORT's default)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prefix", type=int, default=320, help="step index (cached rows)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    combos = [(t, int(n), int(s)) for t in args.tags.split(",") for n in args.threads.split(",") for s in args.spin.split(",")]
    runners = {}
    for tag, threads, spin in combos:
        pos, con = (session(args.folder / f"{g}.{tag}.onnx", threads, spin) for g in GRAPHS)
        pfeed, cfeed = zero_feed(pos, args.batch), zero_feed(con, args.batch)
        # ids stay 0 (valid in every vocabulary; ids never change a step's cost), `step` sets the prefix
        pfeed["step"] = cfeed["step"] = np.array([args.prefix], np.int64)
        one_token(pos, con, pfeed, cfeed)  # warm-up
        runners[(tag, threads, spin)] = (pos, con, pfeed, cfeed, [])
    for _ in range(args.reps):  # round-robin: load changes hit every variant alike
        for key, (pos, con, pfeed, cfeed, times) in runners.items():
            t0 = time.perf_counter()
            one_token(pos, con, pfeed, cfeed)
            times.append(time.perf_counter() - t0)
    rows = []
    for (tag, threads, spin), (*_, times) in runners.items():
        rows.append({"tag": tag, "threads": threads, "spin": spin, **Stats.of(times).ms()})
    base = rows[0]["p50"]
    best = rows[0]["min"]
    first = f"{rows[0]['tag']} t{rows[0]['threads']} s{rows[0]['spin']}"
    print(f"| variant | threads | spinning | p50 ms | p90 ms | min ms | p50 vs {first} | min vs {first} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['tag']} | {r['threads']} | {r['spin']} | {r['p50']:.1f} | {r['p90']:.1f} | {r['min']:.1f} | {base / r['p50']:.2f}x | {best / r['min']:.2f}x |")
    record = {
        "kind": "dq-edge-step-variants",
        "created": utc_stamp(),
        "command": "python benchmarks/step_variants.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "batch": args.batch,
        "prefix": args.prefix,
        "rows": rows,
        "machine": machine_info(),
        "peak_rss_mib": peak_rss_mib(),
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
