"""Output folders that never cost a user data: the one place that decides where a command may write.

Every command that writes a folder goes through `claim_output`:

1. resolve the path (symlinks included) and refuse it when it is, contains or lies inside one of
   the command's inputs (a model, an export, an image folder, ...);
2. refuse a file, a non-empty folder (unless replacing is allowed) and, even when replacing is
   allowed, any folder that does not carry our marker file: only folders dq-edge wrote are replaced;
3. take a lock next to the folder (`filelock`, non-blocking) BEFORE the slow work, so a second
   writer fails at once instead of silently discarding the first one's result;
4. remove temp folders that killed writers left behind (their pid is dead);
5. build the new folder in a uniquely named temp sibling (pid + random), mark it, and swap it in
   with renames: the folder under the final name is always complete, old or new.

Temp files and folders are created with the modes the user's umask allows (like `mkdir`/`touch`),
not the 0600/0700 of `tempfile`, so a web server, a Triton container or a second user can read
the results. Library errors here never name CLI flags; the CLI adds them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from dq_edge.errors import OutputBusyError, OutputExistsError, OutputNotOursError, OutputOverlapError, OutputError

MARKER_NAME = ".dq-edge-output"
TOOL = "dq-edge"
# .<name>.<pid>-<8 hex>.tmp (folder being built, or a file being written) / .old (folder being replaced)
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.(?:tmp|old)$")


def resolve(path: str | os.PathLike) -> Path:
    """Absolute, symlinks resolved (also for the parts that exist below a path that does not)."""
    return Path(path).expanduser().resolve()


# ---------------------------------------------------------------- checks (no side effects)


def check_no_overlap(out: Path, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output that is, contains or is inside an input."""
    out = resolve(out)
    for given in inputs:
        if given is None:
            continue
        inp = resolve(given)
        if out == inp:
            relation = "is"
        elif inp in out.parents:
            relation = "is inside"
        elif out in inp.parents:
            relation = "contains"
        else:
            continue
        raise OutputOverlapError(
            f"the output {out} {relation} the input {inp}; writing it could destroy the input",
            "choose an output folder outside every input",
        )


def is_marked(folder: Path) -> bool:
    """Whether `folder` carries the marker dq-edge writes into every folder it creates."""
    try:
        data = json.loads((folder / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("tool") == TOOL


def check_replaceable(out: Path, overwrite: bool, keep_existing: bool = False) -> None:
    """`out` may become our folder: it is absent, empty, or (replacing allowed) a folder we wrote.

    `keep_existing`: a non-empty folder is fine without replacing (the command decides later,
    e.g. an export that is already up to date); replacing still needs the marker."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder", "choose a new folder; dq-edge never replaces a file")
    if not any(out.iterdir()):
        return
    if overwrite:
        if not is_marked(out):
            raise OutputNotOursError(
                f"{out} is not a folder dq-edge wrote (it has no {MARKER_NAME} marker); refusing to replace it",
                "choose a new output folder; only folders written by dq-edge are ever replaced",
            )
    elif not keep_existing:
        raise OutputExistsError(f"{out} already exists and is not empty", "choose a new output folder, or allow replacing it")


# ---------------------------------------------------------------- temp names, modes, stale temps


def _temp_name(final: Path, kind: str) -> Path:
    return final.parent / f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def new_temp_dir(final: Path) -> Path:
    """An empty folder beside `final`; mode 0777 minus the umask (as `mkdir` does)."""
    while True:
        path = _temp_name(final, "tmp")
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


def new_temp_file(final: Path) -> Path:
    """An empty file beside `final`; mode 0666 minus the umask (as `touch` does)."""
    while True:
        path = _temp_name(final, "tmp")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            continue


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows: os.kill(pid, 0) would terminate it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(parent: Path, name: str | None = None) -> list[Path]:
    """Remove temp files/folders in `parent` (for output `name`, or all) whose writer's pid is
    dead and whose output's lock nobody holds (a pid of another pid namespace may look dead):
    SIGKILL or a power cut skips every cleanup, and they can be large (an export)."""
    removed: list[Path] = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or (name is not None and m["name"] != name) or _pid_alive(int(m["pid"])):
            continue
        try:
            with output_lock(Path(parent) / m["name"]):  # reentrant for the output we hold
                _remove(entry)
        except OutputError:
            continue  # its output is being written: not stale
        removed.append(entry)
    return removed


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            entry.unlink()


# temp folders of earlier dq-edge versions (tempfile.mkdtemp names, no pid): removed from the cache
# once clearly abandoned
_LEGACY_TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
LEGACY_TEMP_AGE_S = 3600.0


def _remove_legacy_temps(parent: Path) -> None:
    import time

    with contextlib.suppress(OSError):
        for entry in Path(parent).iterdir():
            if _LEGACY_TEMP_RE.match(entry.name) and not _TEMP_RE.match(entry.name) and entry.is_dir() and not entry.is_symlink():
                if time.time() - entry.stat().st_mtime > LEGACY_TEMP_AGE_S:
                    _remove(entry)


# ---------------------------------------------------------------- lock


def lock_path(final: Path) -> Path:
    return final.parent / f".{final.name}.lock"


@contextlib.contextmanager
def output_lock(final: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold the output's lock, waiting at most `wait` seconds (by default failing at once).
    Reentrant within a thread (a command that claims a folder may call library code that claims
    it again); the lock file is removed on release."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path(final)), timeout=0, is_singleton=True)
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise OutputBusyError(
            f"another dq-edge command is writing {final} right now",
            "wait for it to finish, or choose another output folder",
        ) from None
    except OSError as exc:
        raise OutputError(f"cannot write the output folder {final}: {exc.strerror or exc}", "choose a writable output folder") from exc
    try:
        yield
    finally:
        if lock.lock_counter == 1:
            # remove the file while still holding it (filelock keeps it on Unix): a peer that
            # opened the old file sees it unlinked once it gets the lock and opens a new one
            with contextlib.suppress(OSError):
                os.unlink(lock_path(final))
        lock.release()


# ---------------------------------------------------------------- claim, stage, swap


def write_marker(folder: Path, command: str) -> None:
    """(Re)write the marker as a new file: a hard-linked copy of an old folder's marker (carried
    over by an update in place) is replaced, never written through."""
    from dq_edge import __version__

    tmp = new_temp_file(folder / MARKER_NAME)
    tmp.write_text(json.dumps({"tool": TOOL, "command": command, "version": __version__}) + "\n")
    os.replace(tmp, folder / MARKER_NAME)


def _swap_in(tmp: Path, final: Path, overwrite: bool) -> None:
    check_replaceable(final, overwrite)  # again: the folder may have changed during the work
    if final.is_dir() and not final.is_symlink() and any(final.iterdir()):
        old = _temp_name(final, "old")
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)  # rename(2) replaces an empty folder


@dataclass(frozen=True)
class OutputClaim:
    """A locked output folder. `staging()` yields the temp folder to fill."""

    path: Path  # resolved
    command: str
    overwrite: bool

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        tmp = new_temp_dir(self.path)
        try:
            yield tmp
            write_marker(tmp, self.command)
            _swap_in(tmp, self.path, self.overwrite)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def check_output(
    out: str | os.PathLike,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    keep_existing: bool = False,
) -> Path:
    """All checks of `claim_output`, without side effects; returns the resolved path."""
    final = resolve(out)
    check_no_overlap(final, inputs)
    check_replaceable(final, overwrite, keep_existing)
    return final


def check_new_file(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """A single-file output (a JSON report): outside every input, and not there yet."""
    final = resolve(out)
    check_no_overlap(final, inputs)
    if final.exists() or final.is_symlink():
        raise OutputExistsError(f"{final} already exists", "choose a new file name; dq-edge never replaces a file it did not just write")
    return final


@contextlib.contextmanager
def claim_output(
    out: str | os.PathLike,
    command: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    keep_existing: bool = False,
) -> Iterator[OutputClaim]:
    """Check `out`, lock it for the duration, clean stale temps; see the module docstring."""
    final = check_output(out, list(inputs), overwrite, keep_existing)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write the output folder {final}: {exc.strerror or exc}", "choose a writable output folder") from exc
    with output_lock(final):
        check_replaceable(final, overwrite, keep_existing)  # a writer that finished while we waited
        remove_stale_temps(final.parent, final.name)
        yield OutputClaim(final, command, overwrite)


@contextlib.contextmanager
def cache_slot(folder: Path, wait: float = 600.0) -> Iterator[None]:
    """Hold a cache folder's lock, waiting while another process fills it (two runs on a fresh
    machine export the default model once, not twice, and neither fails)."""
    folder = resolve(folder)
    stack = contextlib.ExitStack()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        stack.enter_context(output_lock(folder, wait))
    except OutputBusyError:
        raise
    except (OutputError, OSError):
        pass  # a read-only cache: reading a valid copy needs no lock (an export would fail on its own)
    with stack:
        with contextlib.suppress(OSError):
            prepare_cache_folder(folder)
        yield


def prepare_cache_folder(folder: Path, command: str = "cache") -> None:
    """A folder of dq-edge's own cache is ours by location: remove stale temps beside it and mark
    an unmarked one (written by an older dq-edge) so that it may be refreshed."""
    remove_stale_temps(folder.parent)
    _remove_legacy_temps(folder.parent)
    if folder.is_dir() and any(folder.iterdir()) and not is_marked(folder):
        write_marker(folder, command)
