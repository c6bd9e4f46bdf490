"""`dq-edge eval recon MODEL --data ...` and `dq-edge eval gen MODEL|SAMPLES_DIR --data ...`."""

from __future__ import annotations

from pathlib import Path

import typer

from dq_edge.cli import sampling_options as opt


def _progress_run(fn, label: str, threads: int | None = None, **kwargs):
    if threads:
        import torch

        torch.set_num_threads(threads)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed} images"), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task(label, total=None)
        return fn(progress=lambda n: bar.advance(task, n), **kwargs)


def _command(*parts: object, **options: object) -> str:
    """The command line that reproduces a report (recorded in it)."""
    words = ["dq-edge", "eval", *map(str, parts)]
    for flag, value in options.items():
        if value is True:
            words.append(f"--{flag.replace('_', '-')}")
        elif value not in (None, False):
            words += [f"--{flag.replace('_', '-')}", str(value)]
    return " ".join(words)


def _finish(report: dict, out: Path | None, command: str) -> None:
    from dq_edge.eval.report import to_markdown, write_report

    report["command"] = command

    typer.echo(to_markdown(report))
    if out is not None:
        js, md = write_report(report, out)
        typer.echo(f"wrote {js} and {md}")


def _check_report_paths(out: Path | None, *inputs: object) -> None:
    """The JSON report and the markdown beside it: new files outside every input (before the work)."""
    if out is None:
        return
    from dq_edge.cli.output_claim import check_cli_output_file

    paths = [str(i) for i in inputs if i is not None and Path(str(i)).exists()]
    for path in dict.fromkeys((out, out.with_suffix(".md"))):
        check_cli_output_file(path, paths)


def register(app: typer.Typer) -> None:
    eval_app = typer.Typer(help="Offline metrics: PSNR/SSIM/MS-SSIM, rFID/FID + KID (Inception-2015-12-05), code statistics.", no_args_is_help=True)

    @eval_app.command("recon")
    def recon(
        model: Path = typer.Argument(..., help="Model folder (needs a `vae` section)."),
        data: str = typer.Option(..., "--data", help="emoji64 | fmnist | image folder."),
        split: str = typer.Option("test", "--split"),
        num: int = typer.Option(None, "--num", min=1, help="First N images of the split (default: all)."),
        no_fid: bool = typer.Option(False, "--no-fid", help="Skip rFID/KID (no Inception pass)."),
        threads: int = typer.Option(None, "--threads", min=1, help="torch CPU threads (1 is faster on a busy machine)."),
        out: Path = typer.Option(None, "--out", help="Write JSON here and markdown beside it (.md)."),
    ) -> None:
        """Reconstruction quality and code statistics of a DQ-VAE."""
        from dq_edge.eval.run import eval_recon

        _check_report_paths(out, model, data)

        _finish(_progress_run(eval_recon, "reconstruct", threads=threads, model=str(model), data_spec=data, split=split, num=num, fid=not no_fid),
                out, _command("recon", model, data=data, split=split, num=num, no_fid=no_fid))

    @eval_app.command("gen")
    @opt.with_sampling_flags
    def gen(
        source: Path = typer.Argument(..., help="Model folder with a transformer, or a folder of sample PNGs."),
        data: str = typer.Option(..., "--data", help="Real images: emoji64 | fmnist | image folder."),
        split: str = typer.Option("train", "--split"),
        num: int = typer.Option(100, "--num", help="Number of generated and of real images."),
        threads: int = typer.Option(None, "--threads", min=1, help="torch CPU threads (1 is faster on a busy machine)."),
        out: Path = typer.Option(None, "--out", help="Write JSON here and markdown beside it (.md)."),
        *,
        sampling,
    ) -> None:
        """FID and KID of generated images against real ones (a model's samples cycle over all classes)."""
        from dq_edge.errors import UsageError
        from dq_edge.eval.run import eval_gen

        params, seed = sampling, sampling.seed  # sampling flags apply to model sources
        defaults = opt.sampling_params()
        # only what differs from the defaults: recorded in the report and its command line
        sampling = {k: v for k, v in params.to_dict().items() if k != "seed" and v != getattr(defaults, k)}
        if num < 2:
            raise UsageError("--num must be at least 2 for FID/KID", "use --num 100 or more for meaningful numbers")
        _check_report_paths(out, source, data)
        _finish(_progress_run(eval_gen, "generate+features", threads=threads, source=str(source), data_spec=data, split=split, num=num, seed=seed,
                               sampling=sampling),
                out, _command("gen", source, data=data, split=split, num=num, seed=seed, **sampling))

    @eval_app.command("table")
    def table(
        reports: list[Path] = typer.Argument(..., help="JSON reports of `dq-edge eval recon --out`."),
        name: list[str] = typer.Option(None, "--name", help="Row label per report (default: file name)."),
        out: Path = typer.Option(..., "--out", help="Markdown table to write."),
        plot: Path = typer.Option(None, "--plot", help="PNG: PSNR and rFID against codes per image."),
    ) -> None:
        """Compare reconstruction reports side by side (e.g. dynamic vs fixed-fine vs fixed-coarse)."""
        from dq_edge.cli.output_claim import check_cli_output_file
        from dq_edge.eval.compare import write_comparison

        check_cli_output_file(out, list(reports))
        if plot is not None:
            check_cli_output_file(plot, list(reports), flag="--plot")

        typer.echo(write_comparison(list(reports), list(name) if name else None, out, plot))
        typer.echo(f"wrote {out}" + (f" and {plot}" if plot else ""))

    app.add_typer(eval_app, name="eval")
