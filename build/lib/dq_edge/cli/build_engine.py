"""`dq-edge build-engine`: TensorRT engines (strongly typed) from an export folder."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from dq_edge.errors import UsageError


def chosen_precision(fp16: bool, int8: bool, fp32: bool) -> str:
    picked = [p for p, on in (("fp16", fp16), ("int8", int8), ("fp32", fp32)) if on]
    if len(picked) > 1:
        raise UsageError(f"pick one precision, got {' and '.join('--' + p for p in picked)}", "e.g. --fp16")
    return picked[0] if picked else "fp16"


def default_out(export_dir: Path, precision: str) -> Path:
    return export_dir.parent / f"{export_dir.name}-trt-{precision}"


def _plan_table(plans: list, title: str):
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title)
    for col in ("graph", "engine file", "input", "min", "opt", "max"):
        table.add_column(col, overflow="fold")
    for plan in plans:
        for i, (name, (lo, opt, hi)) in enumerate(plan.profile.items()):
            first = i == 0
            table.add_row(plan.name if first else "", plan.engine_file if first else "", name, str(lo), str(opt), str(hi))
    return table


def build_engine_command(
    export_dir: Path = typer.Argument(..., help="Export folder written by `dq-edge export`."),
    fp16: bool = typer.Option(False, "--fp16", help="Build the fp16 ONNX graphs (default)."),
    int8: bool = typer.Option(False, "--int8", help="Build the int8 (explicit Q/DQ) ONNX graphs."),
    fp32: bool = typer.Option(False, "--fp32", help="Build the fp32 ONNX graphs."),
    out: Optional[Path] = typer.Option(None, "--out", help="Engine folder (default: EXPORT_DIR-trt-<precision> beside the export)."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", help="Largest batch of the profiles (<= the export's max batch)."),
    workspace: float = typer.Option(2.0, "--workspace", help="Builder workspace limit in GiB."),
    opt_level: int = typer.Option(3, "--opt-level", help="TensorRT builder optimization level 0..5."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Timing cache file: read if present, written after the build."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated graphs to (re)build; other engines in --out are kept."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Verify the export and print the profiles; build nothing (works without TensorRT)."),
) -> None:
    """Build TensorRT engines (strongly typed: precision comes from the ONNX) for one precision."""
    from rich.console import Console  # noqa: PLC0415

    from dq_edge.engines.plan import BuildOptions, GpuTarget, export_source, make_plan, parse_only  # noqa: PLC0415

    from dq_edge.cli.output_claim import check_cli_output, claim_cli_output  # noqa: PLC0415

    precision = chosen_precision(fp16, int8, fp32)
    options = BuildOptions(precision, max_batch, workspace, opt_level, timing_cache, parse_only(only))
    out = out or default_out(export_dir, precision)
    # an engine folder is updated in place (--only keeps the other engines): only one dq-edge wrote
    claim_args = dict(out=out, inputs=[export_dir], overwrite=True, can_overwrite=False)
    check_cli_output(**claim_args)
    source = export_source(export_dir, precision)
    console = Console()
    if dry_run:
        from dq_edge.engines_probe import gpu_unavailable_reason  # noqa: PLC0415

        if gpu_unavailable_reason() is None:
            from dq_edge.engines.build import current_target, import_tensorrt  # noqa: PLC0415

            target, note = current_target(import_tensorrt()), ""
        else:  # placeholder tags, replaced by the real ones at build time
            target, note = GpuTarget("X.Y", "unknown", (0, 0)), " (trtX.Y / smXY: filled in on the GPU machine)"
        plans = [replace(p, engine_file=p.engine_file.replace(".sm00.", ".smXY.")) for p in make_plan(source, options, target)]
        console.print(_plan_table(plans, f"{precision} engines for {export_dir} -> {out}{note}"))
        return

    from dq_edge.engines.build import build_engines  # noqa: PLC0415

    with claim_cli_output(command="build-engine", **claim_args):
        report = build_engines(source, options, out, on_event=lambda msg: console.print(msg))
    t = report.target
    console.print(
        f"built {len(report.built)} engine(s) for {t.gpu_name} ({t.sm_tag}, TensorRT {t.tensorrt_version}, "
        f"{'strongly typed' if report.strongly_typed else 'builder-flag fallback'})"
        + (f"; kept {', '.join(report.kept)}" if report.kept else "")
        + (f"; removed stale {', '.join(report.dropped)}" if report.dropped else "")
    )
    console.print(f"engine folder: {report.folder}  (manifest: {report.manifest.name})")


def register(app: typer.Typer) -> None:
    app.command("build-engine")(build_engine_command)
