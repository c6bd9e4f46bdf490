"""`dq-edge reconstruct MODEL_OR_PRESET [IMAGES...] --out DIR`: encode + decode images with a DQ-VAE."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("reconstruct")
    def reconstruct(
        model: str = typer.Argument(..., help="Model folder, or a preset name (tiny, emoji64, ...) for a random-init model."),
        images: Optional[List[Path]] = typer.Argument(None, help="Image files or folders (default: the bundled 64x64 emoji samples)."),
        out: Path = typer.Option(..., "--out", help="Output folder: recon/*.png, grain/*.png, grid.png, summary.json."),
        resize: bool = typer.Option(False, "--resize", help="Center-crop and resize images to the model's size instead of failing."),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per forward pass."),
        force: bool = typer.Option(False, "--force", help="Replace an existing, non-empty --out folder."),
    ) -> None:
        """Reconstruct images and show which regions the router coded fine (4 codes) or coarse (1 code)."""
        from dq_edge.atomic import atomic_dir
        from dq_edge.errors import UsageError
        from dq_edge.models.reconstruct import (
            bundled_samples, expand_inputs, load_images, model_from_spec, model_image_size, reconstruct_to_folder,
        )

        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
            raise UsageError(f"{out} already exists and is not empty", "pass --force to replace it or choose another --out")
        paths = expand_inputs(list(images)) if images else bundled_samples()
        pixels = load_images(paths, model_image_size(model), resize)
        vae, description = model_from_spec(model, pixels)
        typer.echo(f"model: {description}")
        with atomic_dir(out, overwrite=force) as tmp:
            results = reconstruct_to_folder(vae, paths, pixels, tmp, batch_size=batch_size)
        for r in results:
            typer.echo(f"{r.name:24s} PSNR {r.psnr_db:6.2f} dB  fine {100 * r.fine_ratio:5.1f}%  {r.n_codes} codes")
        typer.echo(f"wrote {len(results)} reconstructions, grain maps and {out / 'grid.png'}")
