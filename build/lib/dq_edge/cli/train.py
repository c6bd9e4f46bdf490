"""`dq-edge train vae ...` and `dq-edge train transformer ...` (single process or under torchrun)."""

from __future__ import annotations

from pathlib import Path

import typer

COMMON_HELP = "Values: defaults < --config file < flags. Run under `torchrun --nproc_per_node N -m dq_edge train ...` for DDP."


def _progress(total: int, enabled: bool):
    """(context manager, on_step callback): a rich bar with loss, lr, images/s and ETA."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext(), None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[ips]:.1f} img/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )
    task = bar.add_task("train", total=total, loss=float("nan"), lr=0.0, ips=0.0)
    state = {"t": None, "n": 0}

    def on_step(step: int, metrics: dict) -> None:
        import time

        now = time.perf_counter()
        if state["t"] is None:
            state["t"] = now
        else:
            state["n"] += 1
        ips = state["n"] * metrics.get("_batch", 0) / max(now - state["t"], 1e-9) if state["n"] else 0.0
        bar.update(task, completed=step, loss=metrics["loss"], lr=metrics["lr"], ips=ips)

    return bar, on_step


def _run(cfg, resume: bool, config_file: Path | None = None) -> None:
    import contextlib

    from dq_edge.cli.output_claim import check_cli_output, claim_cli_output
    from dq_edge.train.distributed import init_distributed
    from dq_edge.train.loop import CONFIG_NAME, check_out_dir
    from dq_edge.train.runner import train

    info = init_distributed()
    claim = contextlib.nullcontext()
    if info.main:  # rank 0 writes the run folder: it alone checks and locks it
        inputs = [cfg.data if Path(cfg.data).exists() else None, cfg.vae_model, cfg.perceptual_weights, config_file]
        check_cli_output(Path(cfg.out), inputs, keep_existing=True)
        check_out_dir(Path(cfg.out), resume)  # before the progress bar draws
        claim = claim_cli_output(Path(cfg.out), "train", inputs, keep_existing=True)
    ctx, on_step = _progress(cfg.steps, cfg.progress and info.main)
    batch = cfg.batch * info.world_size
    with claim, ctx:
        folder = train(cfg, resume=resume, info=info,
                       on_step=(lambda s, m: on_step(s, {**m, "_batch": batch})) if on_step else None)
    if info.main and folder is not None:
        out = Path(cfg.out)
        typer.echo(f"model folder: {folder}")
        typer.echo(f"log: {out / 'log.jsonl'}  loss curve: {out / 'loss.png'}  config: {out / CONFIG_NAME}")


COMMON_OPTIONS: dict[str, tuple[type, object]] = {
    "data": (str, typer.Option(None, "--data", help="emoji64 | fmnist | image folder.")),
    "steps": (int, typer.Option(None, "--steps")),
    "batch": (int, typer.Option(None, "--batch", help="Images per process per step.")),
    "out": (str, typer.Option(None, "--out", help="Run folder: checkpoints/, log.jsonl, loss.png, model/.")),
    "config": (Path, typer.Option(None, "--config", help="YAML or JSON file of TrainConfig keys.")),
    "resume": (bool, typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint.")),
    "lr": (float, typer.Option(None, "--lr")),
    "warmup_steps": (int, typer.Option(None, "--warmup-steps")),
    "grad_clip": (float, typer.Option(None, "--grad-clip", help="Max global grad norm (0 = off).")),
    "ema_decay": (float, typer.Option(None, "--ema-decay", help="Weight EMA decay (0 = off).")),
    "checkpoint_every": (int, typer.Option(None, "--checkpoint-every")),
    "log_every": (int, typer.Option(None, "--log-every")),
    "seed": (int, typer.Option(None, "--seed")),
    "threads": (int, typer.Option(None, "--threads", min=0, help="torch CPU threads (0 or absent: torch's choice).")),
    "no_progress": (bool, typer.Option(False, "--no-progress", help="No progress bar (logs still written).")),
}


def with_common_options(fn):
    """Append the options both stages share to `fn`'s signature; `fn` receives them as `common`."""
    import functools
    import inspect

    sig = inspect.signature(fn)
    own = [p for name, p in sig.parameters.items() if name != "common"]
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=t) for n, (t, d) in COMMON_OPTIONS.items()]

    @functools.wraps(fn)
    def wrapper(**kwargs):
        common = {n: kwargs.pop(n) for n in COMMON_OPTIONS}
        return fn(common=common, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*own, *extra])
    return wrapper


def _config_and_run(stage: str, common: dict, **stage_flags) -> None:
    from dq_edge.train.config import build_config

    flags = dict(common)
    config, resume, no_progress = flags.pop("config"), flags.pop("resume"), flags.pop("no_progress")
    cfg = build_config(config, stage=stage, progress=False if no_progress else None, **flags, **stage_flags)
    _run(cfg, resume, config)


def register(app: typer.Typer) -> None:
    train_app = typer.Typer(help="Train the DQ-VAE (stage 1) and the DQ-Transformer (stage 2).", no_args_is_help=True)

    @train_app.command("vae", help="Stage 1: DQ-VAE. " + COMMON_HELP)
    @with_common_options
    def vae(
        preset: str = typer.Option(None, "--preset", help="VAE preset (tiny, emoji64, fmnist32, ...)."),
        router_mode: str = typer.Option(None, "--router-mode", help="dynamic | fixed-fine | fixed-coarse (fixed-length baselines)."),
        target_fine_ratio: float = typer.Option(None, "--target-fine-ratio", help="Budget target of the feature router."),
        gan_start: int = typer.Option(None, "--gan-start", help="Step at which the PatchGAN terms start."),
        gan_weight: float = typer.Option(None, "--gan-weight"),
        perceptual_weights: str = typer.Option(None, "--perceptual-weights", help="TorchScript f(x, y) -> distance with trained weights (e.g. scripted LPIPS)."),
        *, common: dict,
    ) -> None:
        from dq_edge.train.config import read_config_file

        vae_over = None
        if target_fine_ratio is not None:
            from_file = (read_config_file(common["config"]).get("vae") or {}) if common["config"] else {}
            # a non-mapping `vae:` goes through unchanged so build_config reports it
            vae_over = {**from_file, "target_fine_ratio": target_fine_ratio} if isinstance(from_file, dict) else from_file
        _config_and_run("vae", common, preset=preset, router_mode=router_mode, gan_start=gan_start, gan_weight=gan_weight,
                        perceptual_weights=perceptual_weights, vae=vae_over)

    @train_app.command("transformer", help="Stage 2: DQ-Transformer on the VAE's token sequences. " + COMMON_HELP)
    @with_common_options
    def transformer(
        vae_model: str = typer.Option(None, "--vae-model", help="Model folder written by `dq-edge train vae`."),
        preset: str = typer.Option(None, "--preset", help="Transformer preset (tiny, emoji64, p6c18)."),
        class_dropout: float = typer.Option(None, "--class-dropout", help="Share of samples trained with the null class (CFG)."),
        unconditional: bool = typer.Option(False, "--unconditional", help="Ignore dataset labels."),
        weight_decay: float = typer.Option(None, "--weight-decay", help="AdamW decay of Linear weight matrices."),
        *, common: dict,
    ) -> None:
        _config_and_run("transformer", common, vae_model=vae_model, preset=preset, class_dropout=class_dropout,
                        weight_decay=weight_decay, conditional=False if unconditional else None)

    app.add_typer(train_app, name="train")
