"""`dq-edge run`: generate images with the torch-free runtime (ONNX Runtime or TensorRT)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from dq_edge.cli import sampling_options as opt
from dq_edge.cli.generation_output import generate_with_progress, read_declared_layout, write_generation
from dq_edge.cli.output_claim import Overwrite, claim_cli_output
from dq_edge.errors import UsageError


def _parse_classes(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError as exc:
        raise UsageError(f"--classes must be comma-separated integers, got {text!r}", "e.g. --classes 1,2,3") from exc


def _stage_table(summary: dict):
    from rich.table import Table

    table = Table(title=f"per-stage time ({summary['backend']}, {summary['precision']})")
    for col in ("stage", "calls", "total s", "mean ms"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for stage, s in summary["stages"].items():
        table.add_row(stage, str(s["calls"]), f"{s['total_s']:.3f}", f"{s['mean_ms']:.3f}")
    return table


def run_command(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Output folder (written atomically: complete or absent)."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="Export folder (ONNX), engine folder (TensorRT) or model folder (exported on first use into the cache). Default: the shipped model."),
    backend: str = typer.Option("auto", "--backend", help="auto | ort-cpu | ort-cuda | ort-trt | trt"),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | fp16 | int8 | w8 | w4 (default: fp32 if exported)."),
    num: int = typer.Option(16, "--num", help="Number of images."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Images generated together (default: as many as the export allows, <= --num)."),
    batching: str = typer.Option("continuous", "--batching", help="continuous: a finished image's row takes the next image at once; static: whole batches. Completion and the official sampler always run static batches."),
    cls: Optional[int] = typer.Option(None, "--class", help="Class id for every image (class-conditional models)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Comma-separated class ids, cycled over the images."),
    complete: Optional[Path] = typer.Option(None, "--complete", help="Image to complete: keep its first tokens, generate the rest."),
    keep_ratio: float = typer.Option(0.5, "--keep-ratio", help="Share of the --complete image's tokens kept."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads (default: 1, see docs/runtime.md)."),
    cache_buckets: bool = typer.Option(True, "--cache-buckets/--full-caches", help="ONNX Runtime: bind length-bucketed KV caches (a step costs O(prefix)) or full-length ones (bitwise the same floats whatever the batch)."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="Capture each step graph in a CUDA graph (native TensorRT backend only)."),
    overwrite: Overwrite = False,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or table."),
    *,
    sampling,
) -> None:
    """Generate images: one PNG each, a grid PNG, tokens.npz and summary.json."""
    from rich.console import Console

    from dq_edge.runtime import images as img
    from dq_edge.cli.first_use_export import resolve_engine_folder
    from dq_edge.runtime.default_model import cache_root, is_model_folder, shipped_model_folder
    from dq_edge.runtime.pipeline import RunRequest, resolve_classes
    from dq_edge.runtime.session import open_runtime
    from dq_edge.runtime.summary import build_summary

    console = Console(stderr=True, quiet=quiet)
    class_list = _parse_classes(classes)
    if complete is None and keep_ratio != 0.5:
        raise UsageError("--keep-ratio only applies with --complete IMAGE")
    if cls is not None and class_list:
        raise UsageError("--class and --classes are exclusive", "pass one of them")
    params = sampling
    if complete is not None and params.sampler == "official":
        raise UsageError("--complete needs the dq-edge sampler", "omit --sampler official")
    if batching not in ("continuous", "static"):
        raise UsageError(f"--batching must be continuous or static, got {batching!r}")
    if num < 1 or (batch is not None and batch < 1):
        raise UsageError(f"--num and --batch must be >= 1, got {num} and {batch}")
    class_request = [cls] if cls is not None else class_list
    source = shipped_model_folder() if engine is None else engine
    declared, manifest_doc = read_declared_layout(source)
    if declared is not None:  # a bad class fails before an export or a backend starts
        resolve_classes(declared, num, class_request)
    exports_model = engine is None or is_model_folder(engine)
    inputs = [source, complete, cache_root() if exports_model else None]
    with claim_cli_output(out, "run", inputs, overwrite) as claim:
        exported_now = False
        if exports_model:
            what = "the shipped model" if engine is None else str(engine)
            with console.status(f"preparing {what} (exported to ONNX once, then cached)"):
                engine, exported_now = resolve_engine_folder(engine, precision)
            if exported_now:
                console.print(f"exported {what} to {engine}")
        # an export/engine folder's manifest was read above: the run reads it once
        opened = open_runtime(manifest_doc if manifest_doc is not None else engine, backend, precision, threads=threads, cuda_graph=cuda_graph, cache_buckets=cache_buckets)
        layout = opened.layout
        per_image_classes = resolve_classes(layout, num, class_request)
        complete_image = img.load_image(complete, opened.backend.dims.image_size) if complete is not None else None
        # the backend report follows the argument checks: a bad class or image ends in one error line
        console.print(f"backend: [bold]{opened.backend.name}[/] ({opened.precision}) -- {opened.reason}")
        for note in opened.skipped:
            console.print(f"  skipped {note}", style="dim")
        for warning in getattr(opened.backend, "warnings", []):
            console.print(f"  warning: {warning}", style="yellow")
        if batch is None:  # guidance runs two backend rows per image; the official sampler one image
            # at a time (it pads each batch's coarse streams to the longest, which can overrun the cache)
            batch = 1 if params.sampler == "official" else max(1, min(num, opened.backend.max_batch // (2 if params.cfg_scale else 1)))
        request = RunRequest(num, batch, per_image_classes, params, complete_image, keep_ratio, batching)

        result = generate_with_progress(console, opened.backend, layout, request)
        summary = build_summary(
            backend=opened.backend.name, backend_reason=opened.reason, precision=opened.precision,
            engine=str(opened.folder), grains=result.grains, lengths=result.tokens.lengths,
            n_codes=result.code_counts, stage_times=opened.backend.stage_times(),
            wall_seconds=result.wall_seconds, batch=batch, sampling=asdict(params),
            extra={
                "batching": result.batching,
                "classes": list(per_image_classes) if per_image_classes else None,
                "complete": {"image": str(complete), "keep_ratio": keep_ratio, "kept_tokens": result.prefix_length}
                if complete is not None else None,
                "backends_skipped": opened.skipped,
                "exported_now": exported_now,
                "command": _command_line(ctx),
            },
        )
        n_images = write_generation(claim, result, per_image_classes, "summary.json", summary)
    console.print(_stage_table(summary))
    typer.echo(
        f"wrote {n_images} images + grid.png, tokens.npz, summary.json to {out} "
        f"({summary['images_per_second']} images/s, mean fine ratio {summary['mean_fine_ratio']})"
    )


def _command_line(ctx: typer.Context) -> str:
    """The options that differ from their defaults, as one reproducible command line."""
    import shlex

    parts = ["dq-edge", "run"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or not param.opts:
            continue
        parts += [param.opts[0]] if value is True else [param.opts[0], str(value)]
    return shlex.join(parts)


def register(app: typer.Typer) -> None:
    app.command("run")(opt.with_sampling_flags(run_command))
