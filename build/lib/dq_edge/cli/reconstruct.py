"""`dq-edge reconstruct MODEL_OR_PRESET [IMAGES...] --out DIR`: encode + decode images with a DQ-VAE."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dq_edge.cli.output_claim import ForceAlias, Overwrite


def register(app: typer.Typer) -> None:
    @app.command("reconstruct")
    def reconstruct(
        model: str = typer.Argument(..., help="Model folder, or a preset name (tiny, emoji64, ...) for a random-init model."),
        images: Optional[List[Path]] = typer.Argument(None, help="Image files or folders (default: the bundled 64x64 emoji samples)."),
        out: Path = typer.Option(..., "--out", help="Output folder: recon/*.png, grain/*.png, grid.png, summary.json."),
        resize: bool = typer.Option(False, "--resize", help="Center-crop and resize images to the model's size instead of failing."),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per forward pass."),
        overwrite: Overwrite = False,
        force: ForceAlias = False,
    ) -> None:
        """Reconstruct images and show which regions the router coded fine (4 codes) or coarse (1 code)."""
        from dq_edge.cli.output_claim import check_cli_output, claim_cli_output
        from dq_edge.reconstruct import image_inputs, is_preset, load_images, model_from_spec, model_image_size, reconstruct_images
        from dq_edge.result_folder import write_result_folder

        given = list(images) if images else []
        inputs = [*given, None if is_preset(model) else Path(model)]
        check_cli_output(out, inputs, overwrite or force)
        paths = image_inputs(given)  # bad images and model names fail before anything is written
        pixels = load_images(paths, model_image_size(model), resize)
        with claim_cli_output(out, "reconstruct", inputs, overwrite or force) as claim:
            vae, description = model_from_spec(model, pixels)
            typer.echo(f"model: {description}")
            results, files = reconstruct_images(vae, paths, pixels, batch_size=batch_size)
            write_result_folder(claim, files)
        for r in results:
            typer.echo(f"{r.name:24s} PSNR {r.psnr_db:6.2f} dB  fine {100 * r.fine_ratio:5.1f}%  {r.n_codes} codes")
        typer.echo(f"wrote {len(results)} reconstructions, grain maps and {out / 'grid.png'}")
