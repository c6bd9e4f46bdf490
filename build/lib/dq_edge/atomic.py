"""Atomic file writes: temp file in the same folder + fsync + os.replace.

An interrupted command never leaves a partial file under a final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `final`; on success it is renamed to `final`, else removed.

    The temp name is unique (pid + random) and the file gets the umask's mode, not 0600."""
    from dq_edge.outputs import new_temp_file

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = new_temp_file(final)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(final: str | os.PathLike, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_text(final: str | os.PathLike, text: str) -> None:
    write_bytes(final, text.encode("utf-8"))


def write_json(final: str | os.PathLike, obj: Any) -> None:
    write_text(final, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False, command: str = "dq-edge") -> Iterator[Path]:
    """Build a whole folder in a temp sibling, then swap it in (dq_edge.outputs.claim_output).

    Used for outputs that are several files (model folder, export). With `overwrite`, an
    existing folder is replaced only after the new one is complete, and only if dq-edge wrote it.
    """
    from dq_edge.outputs import claim_output

    with claim_output(final, command, overwrite=overwrite) as claim, claim.staging() as tmp:
        yield tmp


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
