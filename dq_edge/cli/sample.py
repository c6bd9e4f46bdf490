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
from dq_edge.cli.output_claim import Overwrite, claim_cli_output
from dq_edge.errors import ConfigError, UsageError


def sample_command(
    model: Path = typer.Argument(..., help="Model folder with a VAE and a transformer."),
    out: Path = typer.Option(..., "--out", help="Output folder (written atomically: complete or absent)."),
    num: int = typer.Option(16, "--num", help="Number of images."),
    cls: Optional[List[int]] = typer.Option(None, "--class", help="Class id (repeat for several; cycled over the images)."),
    batch: int = typer.Option(8, "--batch", help="Images generated together."),
    overwrite: Overwrite = False,
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch intra-op threads (default: torch's choice)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    *,
    sampling,
) -> None:
    """Generate images with the torch reference: one PNG each, grid.png, tokens.npz, sample.json."""
    import time

    from rich.console import Console

    from dq_edge.cli.generation_output import generate_with_progress, read_declared_layout, write_generation
    from dq_edge.generation.guidance import guided_rows
    from dq_edge.runtime.pipeline import RunRequest, resolve_classes

    params = sampling  # validated before the model is loaded
    if num < 1 or (batch is not None and batch < 1):
        raise UsageError(f"--num and --batch must be >= 1, got {num} and {batch}")
    declared, _ = read_declared_layout(model)
    if declared is not None:  # a bad class fails before the weights are read
        resolve_classes(declared, num, list(cls) if cls else None)
    console = Console(stderr=True, quiet=quiet)
    with claim_cli_output(out, "sample", [model], overwrite) as claim:
        import torch

        from dq_edge.models.torch_backend import TorchBackend
        from dq_edge.models.transformer import load_transformer
        from dq_edge.models.vae import load_vae

        if threads is not None:
            torch.set_num_threads(threads)
        tr = load_transformer(model)
        vae = load_vae(model)
        layout = tr.layout
        if (vae.config.n_codes, tuple(vae.config.coarse_hw), tuple(vae.config.fine_hw)) != (
            layout.n_codes, tuple(layout.coarse_hw), tuple(layout.fine_hw)
        ):
            raise ConfigError(f"{model}: the transformer's token layout does not match its VAE", "retrain or re-import the transformer")
        classes = resolve_classes(layout, num, list(cls) if cls else None)
        backend = TorchBackend(tr, vae, max_batch=guided_rows(max(1, batch), params.cfg_scale is not None))
        request = RunRequest(num, batch, classes, params)
        start = time.perf_counter()
        result = generate_with_progress(console, backend, layout, request)
        record = {
            "model": str(model),
            "backend": "torch",
            "num": num,
            "batch": batch,
            "classes": list(classes) if classes else None,
            "sampling": asdict(params),
            "sequence_lengths": result.tokens.lengths.tolist(),
            "fine_ratio": result.grains.reshape(num, -1).mean(axis=1).round(4).tolist(),
            "wall_seconds": round(time.perf_counter() - start, 3),
        }
        write_generation(claim, result, classes, "sample.json", record)
    typer.echo(f"wrote {num} images + grid.png, tokens.npz, sample.json to {out}")


def register(app: typer.Typer) -> None:
    app.command("sample")(opt.with_sampling_flags(sample_command))
