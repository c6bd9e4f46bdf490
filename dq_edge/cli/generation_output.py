"""What `dq-edge run` (runtime) and `dq-edge sample` (torch reference) share: the class check
that must come before the slow work, generation under a progress bar, and writing the result
folder (through dq_edge.result_folder, the writer `reconstruct` uses too)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from dq_edge.errors import DQEdgeError


def peek_layout(folder: Path):
    """The token layout a model, export or engine folder declares in its JSON (a cheap read), so
    classes can be checked before a backend starts or a model is exported; None when it cannot
    be read here (the full load reports why)."""
    from dq_edge.tokens import TokenLayout

    folder = Path(folder)
    try:
        for name, key in (("config.json", "tokens"), ("manifest.json", "tokens"), ("manifest.json", "layout")):
            path = folder / name
            data = json.loads(path.read_text()).get(key) if path.is_file() else None
            if isinstance(data, dict):
                return TokenLayout.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, DQEdgeError):
        return None
    return None


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
