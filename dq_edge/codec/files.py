"""File handling of the codec commands: which files, reading .dqt files within bounds, and an
output folder that never replaces an input. Torch-free."""

from __future__ import annotations

from pathlib import Path

from dq_edge.codec.container import MAGIC, DqtFormatError, Limits
from dq_edge.errors import InputError

DQT_SUFFIX = ".dqt"


def expand(paths: list[Path], suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Files as given; folders contribute their files with one of `suffixes` (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in suffixes)
        elif not p.is_file():
            raise InputError(f"{p} does not exist", f"pass existing {what} files or folders")
        else:
            out.append(p)
    if not out:
        raise InputError(f"no {what} files given", f"pass {what} files or folders that hold them")
    stems = [p.stem for p in out]
    dup = next((s for s in stems if stems.count(s) > 1), None)
    if dup is not None:
        raise InputError(f"two inputs are named {dup!r}; their outputs would collide", "rename one of them or encode them separately")
    return out


def read_dqt(path: Path, limits: Limits) -> bytes:
    """The bytes of a .dqt file, refused before reading when larger than the model allows."""
    try:
        size = path.stat().st_size
        if size > limits.max_file_size:
            with open(path, "rb") as fh:
                head = fh.read(len(MAGIC))
            if head != MAGIC:
                raise DqtFormatError(f"{path} is not a .dqt file (wrong magic bytes)", "pass files written by `dq-edge encode`")
            raise DqtFormatError(f"{path} is {size} bytes, more than a .dqt file of this model can be ({limits.max_file_size})", "pass an undamaged .dqt file")
        with open(path, "rb") as fh:
            return fh.read(limits.max_file_size + 1)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", "check the path and its permissions") from exc
