"""The one writer of result folders: `run` and `sample` (generated images) and `reconstruct`.

A result folder holds PNGs (at the top or in sub-folders), `grid.png`, optionally `tokens.npz`
and one JSON record (`summary.json` or `sample.json`). It is built in the claimed output's temp
sibling and swapped in complete (dq_edge.outputs), so it is either all there or absent.
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dq_edge.outputs import OutputClaim
from dq_edge.runtime.result_files import GRID_FILE, TOKENS_FILE, image_name



@dataclass
class ResultFiles:
    """What goes into a result folder. `images`: (relative path, uint8 [H, W, 3])."""

    images: Sequence[tuple[str, np.ndarray]]
    grid: np.ndarray  # uint8 [H, W, 3]
    record_name: str  # "summary.json", "sample.json"
    record: dict[str, Any]
    tokens: dict[str, np.ndarray] | None = None  # arrays of tokens.npz
    extra_json: dict[str, Any] = field(default_factory=dict)  # other JSON files by name


def generation_tokens(result, classes) -> dict[str, np.ndarray]:
    """The arrays of a generation's tokens.npz (a GenerationResult of dq_edge.runtime.pipeline)."""
    return {
        "content": result.tokens.content, "position": result.tokens.position, "segment": result.tokens.segment,
        "lengths": result.tokens.lengths, "grain": result.grains, "codes": result.codes,
        "classes": np.asarray(classes if classes else [], dtype=np.int64),
    }


def numbered_images(pictures: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """uint8 [N, H, W, 3] -> image_0000.png, image_0001.png, ... (the names `run`/`sample` record)."""
    return [(image_name(i), picture) for i, picture in enumerate(pictures)]


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems made unique (a.png and a.jpg -> a, a-2): no result overwrites another."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        stem = path.stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def write_result_folder(claim: OutputClaim, files: ResultFiles) -> Path:
    """Write `files` into the claimed folder, atomically. Returns the folder."""
    from dq_edge.atomic import write_json
    from dq_edge.runtime.images import save_png

    with claim.staging() as tmp:
        for rel, picture in files.images:
            save_png(tmp / rel, picture)
        save_png(tmp / GRID_FILE, files.grid)
        if files.tokens is not None:
            with open(tmp / TOKENS_FILE, "wb") as fh:
                np.savez(fh, **files.tokens)
        for name, obj in files.extra_json.items():
            write_json(tmp / name, obj)
        write_json(tmp / files.record_name, files.record)
    return claim.path
