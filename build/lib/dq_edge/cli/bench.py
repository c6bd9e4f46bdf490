"""`dq-edge bench`: per-stage latency, tokens/s, images/s and peak memory of the runtime.

Torch-free (the runtime's benchmark). The side-by-side suite against the official sampler and
the torch reference is `python benchmarks/run_suite.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dq_edge.errors import UsageError


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--batch-sizes {text!r} is not a comma-separated list of integers", "e.g. --batch-sizes 1,8") from None
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--batch-sizes {text!r} needs positive integers", "e.g. --batch-sizes 1,8")
    return sorted(set(sizes))


def parse_precisions(text: str | None) -> list[str | None]:
    from dq_edge.graph_io import PRECISIONS

    if text is None:
        return [None]  # the folder's default (fp32 when present)
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in chosen if p not in PRECISIONS]
    if bad or not chosen:
        raise UsageError(f"unknown precision {', '.join(bad) or text!r}", f"choose from {', '.join(PRECISIONS)}")
    return chosen


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        engine: Optional[Path] = typer.Option(None, "--engine", help="Export folder (ONNX), engine folder (TensorRT) or model folder. Default: the shipped model, exported once into the cache."),
        backend: str = typer.Option("auto", "--backend", help="auto | ort-cpu | ort-cuda | ort-trt | trt"),
        precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | fp16 | int8, or a list (fp32,int8). Default: fp32."),
        batch_sizes: str = typer.Option("1,8", "--batch-sizes", help="Comma-separated batch sizes."),
        num: int = typer.Option(5, "--num", help="Timed repetitions per measurement."),
        warmup: int = typer.Option(1, "--warmup", help="Untimed calls before each measurement."),
        fine_ratio: float = typer.Option(0.5, "--fine-ratio", help="Share of fine regions in the replayed sequences (images/s)."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads (default: all cores)."),
        cuda_graph: bool = typer.Option(False, "--cuda-graph", help="Capture each step graph in a CUDA graph (native TensorRT backend only)."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON to this file."),
    ) -> None:
        """Per-stage latency (p50/p90), tokens/s, images/s, peak RSS, machine and versions."""
        from rich.console import Console

        from dq_edge.bench.report import bench_tables
        from dq_edge.bench.runner import run_bench
        from dq_edge.cli.output_claim import check_cli_output_file

        sizes = parse_batch_sizes(batch_sizes)
        if json_out is not None:  # before minutes of timing
            check_cli_output_file(json_out, [engine], flag="--json")
        if num < 1 or warmup < 0:
            raise UsageError("--num must be >= 1 and --warmup >= 0")
        if not 0.0 <= fine_ratio <= 1.0:
            raise UsageError(f"--fine-ratio {fine_ratio} is outside 0..1")
        console = Console(stderr=False)
        result = run_bench(
            engine, backend, parse_precisions(precision), sizes, num, warmup, fine_ratio, threads,
            progress=lambda msg: console.print(f"[dim]{msg}[/dim]"), cuda_graph=cuda_graph,
        )
        for table in bench_tables(result):
            console.print(table)
        if json_out is not None:
            from dq_edge.atomic import write_json

            write_json(json_out, result)
            console.print(f"wrote {json_out}")
