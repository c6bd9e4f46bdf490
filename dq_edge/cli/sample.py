"""`dq-edge sample`: torch reference generation from a model folder.

It runs the same token loop and image pipeline as `dq-edge run` (dq_edge.runtime.pipeline),
with the torch backend (dq_edge.models.torch_backend), so its outputs are directly comparable.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import typer

from dq_edge.cli import sampling_options as opt
from dq_edge.errors import ConfigError, InputError, UsageError


def sample_command(
    model: Path = typer.Argument(..., help="Model folder with a VAE and a transformer."),
    out: Path = typer.Option(..., "--out", help="Output folder (written atomically: complete or absent)."),
    num: int = typer.Option(16, "--num", help="Number of images."),
    cls: Optional[List[int]] = typer.Option(None, "--class", help="Class id (repeat for several; cycled over the images)."),
    seed: opt.Seed = 0,
    temperature: opt.Temperature = 1.0,
    top_k: opt.TopK = None,
    top_p: opt.TopP = None,
    top_k_pos: opt.TopKPos = None,
    top_p_pos: opt.TopPPos = None,
    cfg_scale: opt.CfgScale = None,
    greedy: opt.Greedy = False,
    fixed_fine_positions: opt.FixedFinePositions = False,
    sampler: opt.Sampler = "dq-edge",
    batch: int = typer.Option(8, "--batch", help="Images generated together."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder (only once the new one is complete)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch intra-op threads (default: torch's choice)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Generate images with the torch reference: one PNG each, grid.png, tokens.npz, sample.json."""
    import time

    from rich.console import Console

    from dq_edge.atomic import atomic_dir, write_json
    from dq_edge.cli.generation_output import check_output_dir, generate_with_progress, save_tokens
    from dq_edge.models.torch_backend import TorchBackend
    from dq_edge.models.transformer import load_transformer
    from dq_edge.models.vae import load_vae
    from dq_edge.runtime import images as img
    from dq_edge.generation.guidance import guided_rows
    from dq_edge.runtime.pipeline import RunRequest, resolve_classes

    params = opt.sampling_params(  # bad flags fail before the model is loaded
        seed, temperature, top_k, top_p, top_k_pos, top_p_pos, cfg_scale, greedy, fixed_fine_positions, sampler
    )
    if num < 1 or (batch is not None and batch < 1):
        raise UsageError(f"--num and --batch must be >= 1, got {num} and {batch}")
    check_output_dir(out, overwrite)
    console = Console(stderr=True, quiet=quiet)
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    tr = load_transformer(model)
    vae = load_vae(model)
    layout = tr.layout
    if (vae.config.n_codes, tuple(vae.config.coarse_hw), tuple(vae.config.fine_hw)) != (
        layout.n_codes, tuple(layout.coarse_hw), tuple(layout.fine_hw)
    ):
        raise ConfigError(f"{model}: the transformer's token layout does not match its VAE", "retrain or re-import the transformer")
    classes = resolve_classes(layout, num, list(cls) if cls else None)
    backend = TorchBackend(tr, vae, max_batch=guided_rows(max(1, batch), cfg_scale is not None))
    request = RunRequest(num, batch, classes, params)
    start = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        result = generate_with_progress(console, backend, layout, request)
        pictures = img.to_uint8(result.images)
        for i, picture in enumerate(pictures):
            img.save_png(tmp / f"image_{i:04d}.png", picture)
        img.save_png(tmp / "grid.png", img.make_grid(pictures))
        save_tokens(tmp / "tokens.npz", result, classes)
        write_json(
            tmp / "sample.json",
            {
                "model": str(model),
                "backend": "torch",
                "num": num,
                "batch": batch,
                "classes": list(classes) if classes else None,
                "sampling": asdict(params),
                "sequence_lengths": result.tokens.lengths.tolist(),
                "fine_ratio": result.grains.reshape(num, -1).mean(axis=1).round(4).tolist(),
                "wall_seconds": round(time.perf_counter() - start, 3),
            },
        )
    typer.echo(f"wrote {num} images + grid.png, tokens.npz, sample.json to {out}")


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)
