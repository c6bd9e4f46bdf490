"""`dq-edge run` summaries of the shipped model on ONNX Runtime CPU, one per precision.

    python benchmarks/run_summary.py                       # fp32 + int8, 32 images, seed 0
    python benchmarks/run_summary.py --engine EXPORT_DIR --label tiny --precisions fp32

Each precision runs in its own process (so peak RSS is that run's), writes its images to a
temp folder and copies summary.json to benchmarks/results/run-summary-<label><precision>.json
with the exact command. Without --engine the shipped model is used (exported on first use into
the dq-edge cache, which needs torch once).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run_one(precision: str, args: argparse.Namespace, out_root: Path) -> dict:
    """One measured `dq-edge run`; a run that had to export first is repeated, so that neither
    its peak RSS nor its wall time includes the export."""
    summary = _run(precision, args, out_root / f"{precision}-first")
    if summary.get("exported_now"):
        summary = _run(precision, args, out_root / precision)
    return summary


def _run(precision: str, args: argparse.Namespace, out: Path) -> dict:
    command = [
        sys.executable, "-m", "dq_edge", "run", "--backend", "ort-cpu", "--precision", precision,
        "--num", str(args.num), "--batch", str(args.batch), "--seed", str(args.seed), "--out", str(out), "--quiet",
    ]
    if args.engine:
        command += ["--engine", str(args.engine)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    load_before = os.getloadavg()
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{precision}: dq-edge run failed: {proc.stderr.strip()}")
    summary = json.loads((out / "summary.json").read_text())
    shown = ["dq-edge", *command[3:]]
    shown[shown.index("--out") + 1] = "OUT"
    summary["command"] = shlex.join(shown)
    summary["reproduce"] = "python benchmarks/run_summary.py " + " ".join(sys.argv[1:])
    # a busy machine makes every time above meaningless: record how busy it was
    summary["load_average_1min"] = {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", type=Path, help="export folder (default: the shipped model)")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--num", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--label", default="", help="file name prefix, e.g. 'tiny' -> run-summary-tiny-fp32.json")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    prefix = f"{args.label}-" if args.label else ""
    with tempfile.TemporaryDirectory(prefix="dq-edge-run-summary-") as tmp:
        for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
            summary = run_one(precision, args, Path(tmp))
            path = RESULTS / f"run-summary-{prefix}{precision}.json"
            path.write_text(json.dumps(summary, indent=2) + "\n")
            stages = summary["stages"]
            print(
                f"{precision}: {summary['images_per_second']} images/s, "
                f"position step {stages['position_step']['p50_ms']} ms, content step {stages['content_step']['p50_ms']} ms (p50), "
                f"mean fine ratio {summary['mean_fine_ratio']}, peak RSS {summary['peak_rss_mib']} MiB -> {path}"
            )


if __name__ == "__main__":
    main()
