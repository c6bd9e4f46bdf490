"""Peak memory of `dq-edge export --precision int8` at the official 256-px dims (issue 14, item 5).

    python benchmarks/int8_memory.py [--calib-num 2] [--out benchmarks/results/int8_memory-p6c18.json]

Builds (once, cached in benchmarks/.cache/) a model folder with random weights at the official
dims: the ImageNet-256 dual-grain VAE preset (48 M parameters) and the p6c18 transformer
(309 M parameters, 16x16 coarse / 32x32 fine grid, 1024 codes), then runs the export command in
a child process under `/usr/bin/time -v` and records its maximum resident set size, wall time,
the calibration it did and the machine load before and after. Calibration images: the bundled
samples (dq_edge/assets/samples), resized to 256 px.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("DQ_EDGE_BENCH_CACHE", REPO / "benchmarks" / ".cache"))
SAMPLES = REPO / "dq_edge" / "assets" / "samples"


def model_folder(folder: Path) -> Path:
    if (folder / "config.json").is_file():
        return folder
    from dq_edge.models.transformer import build_transformer, save_transformer
    from dq_edge.models.vae import build_vae, save_vae

    vae = build_vae("imagenet256-dual", seed=0)
    save_vae(vae, folder, overwrite=True)
    save_transformer(build_transformer("p6c18", vae.token_layout(), seed=0), folder, overwrite=True)
    return folder


def time_v(cmd: list[str]) -> tuple[int, dict[str, str], str]:
    """Run `cmd` under GNU time -v; (exit code, its report fields, the command's stderr tail)."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    fields = dict(re.findall(r"^\s*([^:\n]+):\s*(.*)$", proc.stderr, flags=re.M))
    return proc.returncode, fields, proc.stderr[-2000:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib-num", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "int8_memory-p6c18.json")
    args = ap.parse_args(argv)
    from dq_edge.bench.machine import machine_info, utc_stamp

    model = model_folder(CACHE / "p6c18-imagenet256-model-seed0")
    uptime_start = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="int8-memory-") as tmp:
        cmd = [sys.executable, "-m", "dq_edge", "export", str(model), "--out", str(Path(tmp) / "export"), "--precision", "int8",
               "--calib-images", str(SAMPLES), "--calib-num", str(args.calib_num)]
        t0 = time.perf_counter()
        code, fields, tail = time_v(cmd)
        seconds = time.perf_counter() - t0
        manifest = json.loads((Path(tmp) / "export" / "manifest.json").read_text()) if code == 0 else None
    record = {
        "kind": "dq-edge-int8-export-memory",
        "created": utc_stamp(),
        "command": "python benchmarks/int8_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "export_command": "dq-edge export MODEL --out OUT --precision int8 --calib-images dq_edge/assets/samples --calib-num " + str(args.calib_num),
        "model": "random weights: VAE preset imagenet256-dual (48 M) + transformer preset p6c18 (309 M), 256 px",
        "exit_code": code,
        "max_rss_mib": round(int(fields.get("Maximum resident set size (kbytes)", "0")) / 1024, 1),
        "wall_seconds": round(seconds, 1),
        "calibration": None if manifest is None else manifest["calibration"],
        "graphs": None if manifest is None else {g: {k: v for k, v in e.items() if k not in ("spec", "sha256")} for g, e in manifest["precisions"]["int8"]["graphs"].items()},
        "machine": machine_info(),
        "uptime": {"start": uptime_start, "end": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()},
        "stderr_tail": None if code == 0 else tail,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("exit_code", "max_rss_mib", "wall_seconds", "calibration", "uptime")}, indent=1))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
