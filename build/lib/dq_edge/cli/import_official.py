"""`dq-edge import-official`: official DQ checkpoint (.ckpt + YAML) -> dq-edge model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dq_edge.cli.output_claim import ForceAlias, Overwrite


def register(app: typer.Typer) -> None:
    @app.command("import-official")
    def import_official(
        ckpt: Path = typer.Option(..., "--ckpt", help="Lightning .ckpt of the official code (read with weights_only=True)."),
        config: Path = typer.Option(..., "--config", help="Its training YAML (model.target + model.params)."),
        out: Path = typer.Option(..., "--out", help="Model folder to write (config.json + model.safetensors)."),
        thresholds: Optional[Path] = typer.Option(
            None, "--thresholds", help="Entropy thresholds JSON (default: json_path in the YAML, relative to the YAML's folder)."
        ),
        legacy_bins: Optional[bool] = typer.Option(
            None,
            "--legacy-entropy-bins/--current-entropy-bins",
            help="Entropy histogram bins linspace(0,1,32) (legacy, default for entropy models: the released "
            "checkpoint uses them) or linspace(-1,1,32) (current).",
        ),
        vae: Optional[Path] = typer.Option(None, "--vae", help="Stage-2 only: a dq-edge model folder to take the VAE from."),
        overwrite: Overwrite = False,
        force: ForceAlias = False,
    ) -> None:
        """Import an official stage-1 (DQ-VAE) or stage-2 (DQ-Transformer) checkpoint."""
        from dq_edge.cli.output_claim import claim_cli_output
        from dq_edge.models.official_import import import_official_checkpoint

        overwrite = overwrite or force
        with claim_cli_output(out, "import-official", [ckpt, config, thresholds, vae], overwrite):
            result = import_official_checkpoint(
                ckpt=ckpt, config=config, out=out, thresholds=thresholds, legacy_bins=legacy_bins, vae_folder=vae, force=overwrite
            )
        for notice in result.notices:
            typer.echo(f"note: {notice}", err=True)
        typer.echo(f"imported {result.kind} model -> {result.out}")
