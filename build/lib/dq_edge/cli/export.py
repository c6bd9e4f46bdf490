"""`dq-edge export MODEL --out DIR`: ONNX graphs in fp32/fp16/int8 + manifest.json."""

from __future__ import annotations

from pathlib import Path

import typer

from dq_edge.cli.output_claim import ForceAlias, Overwrite


def check_calibration_source(req) -> None:
    """Load the int8 calibration images as the export will (a small read), so that a missing,
    empty or unreadable source fails now, not after the fp32 graphs are exported."""
    import json

    from dq_edge.data.registry import load_dataset

    try:  # a plain read (no torch import): a broken config is reported by the export itself
        size = int(json.loads((Path(req.model) / "config.json").read_text())["vae"]["image_size"])
    except (OSError, ValueError, KeyError, TypeError):
        size = None
    spec = req.calib_dataset or str(req.calib_images)
    load_dataset(spec, split="train", image_size=size)


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        model: Path = typer.Argument(..., help="Model folder (config.json + model.safetensors)."),
        out: Path = typer.Option(..., "--out", help="Export folder to write (created atomically)."),
        precision: str = typer.Option("fp32", "--precision", help="Comma-separated: fp32, fp16, int8."),
        max_batch: int = typer.Option(8, "--max-batch", help="Largest batch the graphs (and engine profiles) accept."),
        calib_images: Path = typer.Option(None, "--calib-images", help="int8: folder of calibration images of the model's size."),
        calib_dataset: str = typer.Option(None, "--calib-dataset", help="int8: built-in dataset name (emoji64, fmnist) for calibration."),
        calib_num: int = typer.Option(32, "--calib-num", help="int8: number of calibration images."),
        opset: int = typer.Option(17, "--opset", help="ONNX opset (>= 17: LayerNormalization as one op)."),
        exporter: str = typer.Option("legacy", "--exporter", help="torch.onnx exporter: legacy (TorchScript tracing, fast) or dynamo (torch.export, smaller graphs, ~5x slower)."),
        overwrite: Overwrite = False,
        force: ForceAlias = False,
    ) -> None:
        """Export every graph (encoder, dgc, decoder, transformer steps, prefill) per precision."""
        from rich.console import Console

        from dq_edge.cli.output_claim import check_cli_output, claim_cli_output
        from dq_edge.export.pipeline import ExportRequest, export_model, validate
        from dq_edge.errors import UsageError

        if not model.exists():
            raise UsageError(f"model folder {model} does not exist", "pass a folder written by `dq-edge train` or `dq-edge import-official`")
        overwrite = overwrite or force
        inputs = [model, calib_images]
        # an existing export may be up to date (nothing written); replacing one needs the marker
        check_cli_output(out, inputs, overwrite, keep_existing=True)
        req = ExportRequest(
            model=model, out=out, precisions=precision, max_batch=max_batch, opset=opset, exporter=exporter,
            calib_images=calib_images, calib_dataset=calib_dataset, calib_num=calib_num, force=overwrite,
        )
        validate(req)
        if "int8" in req.precisions:
            check_calibration_source(req)  # seconds of export work come before the calibration
        console = Console(stderr=True)
        with claim_cli_output(out, "export", inputs, overwrite, keep_existing=True):
            with console.status("exporting") as status:
                result = export_model(req, progress=lambda msg: status.update(msg))
        manifest = result.manifest
        files = sum(len(p["graphs"]) for p in manifest["precisions"].values())
        state = "up to date" if result.up_to_date else f"exported in {result.seconds:.1f} s"
        typer.echo(f"{out}: {state} ({files} graphs, precisions {', '.join(manifest['precisions'])}, max batch {manifest['max_batch']}, max length {manifest['max_length']})")
