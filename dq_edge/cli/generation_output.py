"""What `dq-edge run` (runtime) and `dq-edge sample` (torch reference) share: the output folder
check, generation under a progress bar, and the tokens file."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from dq_edge.errors import InputError


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Fail before generating anything when `out` cannot be (re)placed."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder", "pass a new folder to --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} is not empty", "pass a new folder to --out, or --overwrite to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        os.rmdir(probe)
    except OSError as exc:
        raise InputError(f"cannot write the output folder {out}: {exc.strerror or exc}", "pass a writable --out folder") from exc


def generate_with_progress(console, backend, layout, request):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dq_edge.runtime.pipeline import generate_images

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        # an upper bound: every image all fine (max_length - 1 steps); actual sequences stop earlier
        tokens_task = progress.add_task("tokens", total=request.num * (layout.max_length - 1))
        images_task = progress.add_task("images", total=request.num)
        start = time.perf_counter()
        result = generate_images(
            backend, layout, request,
            on_tokens=lambda n: progress.advance(tokens_task, n),
            on_images=lambda n: progress.advance(images_task, n),
        )
        progress.update(tokens_task, total=progress.tasks[tokens_task].completed)
    console.print(f"generated {request.num} images in {time.perf_counter() - start:.2f} s")
    return result


def save_tokens(path: Path, result, classes) -> None:
    import numpy as np

    from dq_edge.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                content=result.tokens.content, position=result.tokens.position, segment=result.tokens.segment,
                lengths=result.tokens.lengths, grain=result.grains, codes=result.codes,
                classes=np.asarray(classes if classes else [], dtype=np.int64),
            )
