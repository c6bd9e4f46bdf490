"""`dq-edge check DIR`: onnx.checker, polygraphy lint and TensorRT-readiness rules."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check(
        folder: Path = typer.Argument(..., help="Export folder written by `dq-edge export`."),
        precision: str = typer.Option(None, "--precision", help="Only these precisions (comma-separated)."),
        no_lint: bool = typer.Option(False, "--no-lint", help="Skip polygraphy lint (the other rules still run)."),
    ) -> None:
        """Exit 1 if any graph breaks a rule."""
        from rich.console import Console
        from rich.table import Table

        from dq_edge.errors import DQEdgeError
        from dq_edge.export.checks import RULES, check_export
        from dq_edge.export.manifest import parse_precisions

        precisions = parse_precisions(precision) if precision else None
        report = check_export(folder, lint=not no_lint, precisions=precisions)
        table = Table(title=f"dq-edge check {folder}")
        table.add_column("precision")
        table.add_column("graph")
        rules = [r for r in RULES if any(f.rule == r for f in report.findings)]
        for r in rules:
            table.add_column(r)
        rows: dict[tuple[str, str], dict[str, str]] = {}
        for f in report.findings:
            rows.setdefault((f.precision, f.graph), {})[f.rule] = "ok" if f.ok else "FAIL"
        for (prec, graph), cells in rows.items():
            table.add_row(prec, graph, *[cells.get(r, "-") for r in rules])
        console = Console(width=None if sys.stdout.isatty() else 160)
        console.print(table)
        for f in report.failures():
            console.print(f"FAIL {f.precision} {f.graph} {f.rule}: {f.detail}", markup=False)
        n_fail = len(report.failures())
        typer.echo(f"{len(rows)} graphs, {len(rules)} rules: " + ("all passed" if not n_fail else f"{n_fail} violations"))
        if n_fail:
            # an error (not typer.Exit) so that main() returns 1 under standalone_mode=False
            raise DQEdgeError(
                f"{n_fail} TensorRT-readiness violations in {folder}",
                "see the FAIL lines above; re-export with this dq-edge (`dq-edge export ... --overwrite`)",
            )
