"""`dq-edge data prepare NAME` and `dq-edge data info NAME|PATH`."""

from __future__ import annotations

import json

import typer

from dq_edge.cli.output_claim import ForceAlias


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Prepare and inspect datasets (built-in: emoji64, fmnist; or any image folder).", no_args_is_help=True)

    @data_app.command("prepare")
    def prepare(
        name: str = typer.Argument(..., help="Built-in dataset: emoji64 (npm) or fmnist (Debian package)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild even if the prepared files exist."),
        force: ForceAlias = False,
    ) -> None:
        """Fetch a built-in dataset into the data cache ($DQ_EDGE_DATA or ~/.cache/dq-edge/data)."""
        from dq_edge.data import load_dataset, prepare_dataset

        paths = prepare_dataset(name, force=overwrite or force)
        for split, path in paths.items():
            s = load_dataset(name, split)
            typer.echo(f"{name}/{split}: {len(s)} images {s.image_size}x{s.image_size}, {s.n_classes} classes -> {path}")

    @data_app.command("info")
    def info(
        spec: str = typer.Argument(..., help="Built-in name or image folder."),
        split: str = typer.Option("train", "--split", help="train | test (folders: subfolder of that name if present)."),
        image_size: int = typer.Option(None, "--image-size", help="Folders: center-crop + resize to N x N."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Number of images, size, classes, unreadable files skipped."""
        from dq_edge.data import load_dataset

        s = load_dataset(spec, split, image_size=image_size)
        d = s.info()
        if as_json:
            typer.echo(json.dumps(d, indent=2))
            return
        for k, v in d.items():
            typer.echo(f"{k}: {v}")

    app.add_typer(data_app, name="data")
