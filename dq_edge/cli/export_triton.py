"""`dq-edge export-triton`: a Triton model repository (Python backend) for the stock Triton container."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dq_edge.cli.output_claim import Overwrite, check_cli_output
from dq_edge.cli.serve import BackendOpt, InstancesOpt, MaxBatchOpt, PrecisionOpt, QueueDelayOpt, ThreadsOpt, resolve_engine


def export_triton_command(
    out: Path = typer.Option(..., "--out", help="Model repository folder to write (written atomically)."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="Export folder (ONNX), engine folder (TensorRT) or model folder. Default: the shipped model."),
    backend: str = BackendOpt,
    precision: Optional[str] = PrecisionOpt,
    max_batch: Optional[int] = MaxBatchOpt,
    instances: int = InstancesOpt,
    queue_delay_us: int = QueueDelayOpt,
    threads: Optional[int] = ThreadsOpt,
    link: bool = typer.Option(False, "--link", help="Point at the engine folder by absolute path instead of copying it into the repository."),
    overwrite: Overwrite = False,
) -> None:
    """Write REPO/dq_edge/{config.pbtxt, 1/model.py, 1/engine/} for `tritonserver --model-repository REPO`."""
    from dq_edge.serve.engine import describe
    from dq_edge.serve.repository import RepositoryOptions, write_repository

    check_cli_output(out, [engine] if engine is not None else [], overwrite)  # before any export on first use
    folder = resolve_engine(engine, precision)
    check_cli_output(out, [folder], overwrite)
    info = describe(folder, precision)
    options = RepositoryOptions(backend, precision, max_batch, instances, queue_delay_us, threads, link)
    write_repository(out, folder, info, options, overwrite=overwrite)
    typer.echo(
        f"wrote model repository {out} (model 'dq_edge', {info.precision}, backend {backend}, "
        f"max batch {max_batch or info.max_batch}, {instances} instance(s)); "
        f"start it with: tritonserver --model-repository {out.resolve()}"
    )


def register(app: typer.Typer) -> None:
    app.command("export-triton")(export_triton_command)
