"""`dq-edge compare`: TensorRT engines vs ONNX Runtime, per graph (Polygraphy)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _table(report: list, precision: str, trt_note: str | None):
    from rich.table import Table  # noqa: PLC0415

    from dq_edge.engines.compare import INT_MISMATCH, TOLERANCES  # noqa: PLC0415

    atol, rtol = TOLERANCES[precision]
    title = f"{precision}: TensorRT vs ONNX Runtime (atol {atol:g}, rtol {rtol:g}, int mismatch <= {INT_MISMATCH[precision]:.0%})"
    table = Table(title=title if trt_note is None else f"{precision}: ONNX Runtime side only ({trt_note})")
    for col in ("graph", "output", "shape", "finite (ORT)", "max |err|", "int mismatch", "verdict"):
        table.add_column(col, overflow="fold")
    for g in report:
        for i, o in enumerate(g.outputs):
            verdict = "skipped" if o.passed is None else ("pass" if o.passed else "FAIL")
            table.add_row(
                g.graph if i == 0 else "",
                o.name,
                str(list(o.shape)),
                "yes" if o.finite else "NO",
                "-" if o.max_abs_err is None else f"{o.max_abs_err:.3g}",
                "-" if o.mismatch is None else f"{o.mismatch:.2%}",
                verdict,
            )
    return table


def compare_command(
    export_dir: Path = typer.Argument(..., help="Export folder written by `dq-edge export`."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="Engine folder written by `dq-edge build-engine`."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | fp16 | int8 (default: the engine folder's)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated graphs to compare (default: all)."),
    batch: int = typer.Option(2, "--batch", help="Batch of the random test inputs."),
    seed: int = typer.Option(0, "--seed", help="Seed of the test inputs."),
    save_inputs: Optional[Path] = typer.Option(None, "--save-inputs", help="Write the inputs as raw files and print trtexec commands replaying them."),
) -> None:
    """Run each graph on ONNX Runtime and on its TensorRT engine with the same inputs and compare.

    Without TensorRT or a GPU the ONNX Runtime side still runs (and must produce finite outputs);
    the TensorRT side is reported as skipped, never as passed."""
    from rich.console import Console  # noqa: PLC0415

    from dq_edge.engines.compare import compare_graphs, save_feeds, trt_runner_factory  # noqa: PLC0415
    from dq_edge.engines.manifest import check_export_match, read_manifest, verify_engine_files  # noqa: PLC0415
    from dq_edge.engines.plan import export_source, parse_only  # noqa: PLC0415
    from dq_edge.engines_probe import gpu_unavailable_reason  # noqa: PLC0415
    from dq_edge.errors import DQEdgeError, UsageError  # noqa: PLC0415

    from dq_edge.cli.output_claim import check_cli_output, claim_cli_output  # noqa: PLC0415

    if save_inputs is not None:  # raw input files are written straight into it: a new folder
        check_cli_output(save_inputs, [export_dir, engine], flag="--save-inputs", can_overwrite=False)
    graphs = parse_only(only)
    manifest = read_manifest(engine) if engine is not None else None
    if precision is None:
        precision = manifest.precision if manifest is not None else "fp32"
    source = export_source(export_dir, precision)
    second, note = None, None
    if manifest is not None:
        check_export_match(manifest, source)
        graphs = graphs or tuple(g for g in manifest.engines if g in source.onnx_files)
        verify_engine_files(manifest, graphs)
        reason = gpu_unavailable_reason()
        if reason is None:
            second = trt_runner_factory({g: manifest.engine_path(g) for g in graphs})
        else:
            note = f"TensorRT side skipped: {reason}"
    else:
        note = "TensorRT side skipped: no --engine folder given"
    if batch < 1:
        raise UsageError(f"--batch {batch} must be >= 1", "e.g. --batch 2")

    if manifest is not None:
        batch = min(batch, manifest.max_batch)  # the engines' profiles end at their max batch
    report = compare_graphs(source, graphs, second, batch=batch, seed=seed)
    console = Console()
    console.print(_table(report, precision, note))
    if save_inputs is not None:
        files = {g: manifest.engine_path(g) for g in manifest.engines} if manifest is not None else None
        with claim_cli_output(save_inputs, "compare", [export_dir, engine], flag="--save-inputs", can_overwrite=False):
            commands = save_feeds(report, save_inputs, files)
        for graph, cmd in commands.items():
            console.print(f"{graph}: {cmd}", soft_wrap=True)
    not_finite = [g.graph for g in report if not all(o.finite for o in g.outputs)]
    if not_finite:
        raise DQEdgeError(f"ONNX Runtime produced NaN/inf in {', '.join(not_finite)}", "re-export; run `dq-edge check EXPORT_DIR`")
    if note is not None:
        console.print(f"ONNX Runtime side ran {len(report)} graph(s) with finite outputs; {note}. Nothing was compared.")
        return
    failed = [g.graph for g in report if not g.passed]
    if failed:
        raise DQEdgeError(
            f"TensorRT differs from ONNX Runtime beyond the {precision} tolerances in {', '.join(failed)}",
            "see the table; rebuild with --fp32 to separate precision loss from a build problem",
        )
    console.print(f"all {len(report)} graph(s) match within the {precision} tolerances")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
