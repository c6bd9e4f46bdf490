"""What `dq-edge run` (runtime) and `dq-edge sample` (torch reference) share: the class check
that must come before the slow work, generation under a progress bar, and writing the result
folder (through dq_edge.result_folder, the writer `reconstruct` uses too)."""

from __future__ import annotations

import time
from pathlib import Path



def read_declared_layout(folder: Path):
    """(layout, doc): the token layout a model, export or engine folder declares, read through the
    validated artifact reader (bounded size and depth, schema), so classes can be checked before a
    backend starts or a model is exported. `doc` is the export/engine manifest, handed on to
    `open_runtime` so that a run reads it once; None for a model folder. layout is None when the
    folder declares none (the full load reports why)."""
    from dq_edge.artifact import ENGINE_KIND, EXPORT_KIND, MODEL_KIND, read_artifact

    folder = Path(folder)
    hint = "pass a model folder, or a folder written by `dq-edge export` or `dq-edge build-engine`"
    if (folder / MODEL_KIND.file_name).is_file():
        doc = read_artifact(folder, (MODEL_KIND,), hint)
        layout = doc.parsed.tokens
        return (layout.to_layout() if layout is not None else None), None
    if not (folder / EXPORT_KIND.file_name).is_file():
        return None, None  # not an artifact folder: the full load says what it is not
    doc = read_artifact(folder, (EXPORT_KIND, ENGINE_KIND), hint)
    layout = doc.parsed.tokens if doc.kind is EXPORT_KIND else doc.parsed.layout
    return (layout.to_layout() if layout is not None else None), doc


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


def write_generation(claim, result, classes, record_name: str, record: dict) -> int:
    """One PNG per image, grid.png, tokens.npz and the JSON record; returns the image count."""
    from dq_edge.result_folder import ResultFiles, generation_tokens, numbered_images, write_result_folder
    from dq_edge.runtime import images as img

    pictures = img.to_uint8(result.images)
    files = ResultFiles(numbered_images(pictures), img.make_grid(pictures), record_name, record, generation_tokens(result, classes))
    write_result_folder(claim, files)
    return len(pictures)
