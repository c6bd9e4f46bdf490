"""Step latency at a short and a long prefix, with length-bucketed caches against full-length
caches, side by side in one run (ONNX Runtime CPU, fp32).

    python benchmarks/cache_buckets.py [--model p6c18] [--batch 8] [--prefixes 64,640] [--reps 3]
        [--threads 1] [--out benchmarks/results/cache_buckets-p6c18]

A token = one position step + one content step at step index `prefix` (caches hold `prefix`
rows). Bucketed: the backend binds the smallest cache bucket (64, 128, ..., L rows) holding
prefix + 1 rows; full: every step binds all L rows (the behaviour before buckets). The step
graphs of `--model` come from the suite's cache (benchmarks/suite_models.py: p6c18 = the
official 256-px dims with random weights). Writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="p6c18")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prefixes", default="64,640")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(f"benchmarks/results/cache_buckets-{args.model}")

    import onnxruntime

    from dq_edge.bench.stages import BenchSettings, bench_steps
    from dq_edge.graph_io import bucket_for
    from dq_edge.runtime.ort_backend import OrtBackend
    from suite_models import prepare_p6c18

    model = prepare_p6c18(["fp32"], lambda msg: print(msg, file=sys.stderr), preset=args.model)
    prefixes = [int(p) for p in args.prefixes.split(",")]
    settings = BenchSettings(warmup=1, reps=args.reps)
    rows = {}
    for mode, smallest in (("full", None), ("bucketed", 64)):
        backend = OrtBackend(model.files["fp32"], model.dims, model.layout, "fp32", args.batch,
                             threads=args.threads, smallest_bucket=smallest)
        timed = bench_steps(backend, args.batch, prefixes, settings)
        buckets = backend._buffers.buckets
        rows[mode] = {
            str(p): {"token_ms": timed[p]["wall"]["p50"], "position_step_ms": timed[p]["position_step"]["p50"],
                     "content_step_ms": timed[p]["content_step"]["p50"], "cache_rows": bucket_for(p + 1, buckets)}
            for p in prefixes
        }
        backend.close()
        del backend
    short, long_ = str(prefixes[0]), str(prefixes[-1])
    result = {
        "command": f"python benchmarks/cache_buckets.py --model {args.model} --batch {args.batch} "
                   f"--prefixes {args.prefixes} --reps {args.reps} --threads {args.threads}",
        "model": model.label, "backend": "ort-cpu fp32", "batch": args.batch, "reps": args.reps, "threads": args.threads,
        "max_length": model.dims.max_length, "results": rows,
        "ratio_short_over_long": {m: round(rows[m][short]["token_ms"] / rows[m][long_]["token_ms"], 3) for m in rows},
        "machine": {"platform": platform.platform(), "cpus": len(__import__("os").sched_getaffinity(0)),
                    "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
                    "note": "shared with other agents: absolute times are noisy; both modes ran in this one process"},
        "versions": {"onnxruntime": onnxruntime.__version__},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(_markdown(result, prefixes))
    print(json.dumps(result))


def _markdown(r: dict, prefixes: list[int]) -> str:
    lines = [
        f"# Step latency by prefix: bucketed vs full-length caches ({r['model']}; {r['backend']}, batch {r['batch']})",
        "",
        "| caches | prefix | cache rows bound | token ms (median) | position step ms | content step ms |",
        "|---|---|---|---|---|---|",
    ]
    for mode, per in r["results"].items():
        for p in prefixes:
            x = per[str(p)]
            lines.append(f"| {mode} | {p} | {x['cache_rows']} | {x['token_ms']:.1f} | {x['position_step_ms']:.1f} | {x['content_step_ms']:.1f} |")
    ratios = ", ".join(f"{m} {v}x" for m, v in r["ratio_short_over_long"].items())
    lines += ["", f"step({prefixes[0]}) / step({prefixes[-1]}): {ratios} (target <= 0.5x).", "",
              f"Command: `{r['command']}`  ", f"Machine: {r['machine']['platform']}, {r['machine']['cpus']} CPUs; "
              f"`uptime`: {r['machine']['uptime']}  ", f"Note: {r['machine']['note']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
