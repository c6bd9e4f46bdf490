"""Claiming a command's output (dq_edge.outputs) with hints that name the command's flags.

The library says what is wrong with an output path; only the CLI knows it came from `--out`
and that `--overwrite` replaces a folder dq-edge wrote. Every command that writes a folder
claims it here first, before any slow work, and holds the claim (a lock) until it is written.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated, Iterable, Iterator

import typer

from dq_edge.errors import OutputBusyError, OutputError, OutputExistsError, OutputNotOursError, OutputOverlapError
from dq_edge.outputs import OutputClaim, check_new_file, check_output, claim_output

# `--overwrite`: the one flag name of every command; `--force` is its old, hidden spelling
Overwrite = Annotated[bool, typer.Option(
    "--overwrite",
    help="Replace the output folder if a dq-edge command wrote it (never another folder or a file), once the new one is complete.",
)]
ForceAlias = Annotated[bool, typer.Option("--force", hidden=True, help="Deprecated spelling of --overwrite.")]


def flag_hint(exc: OutputError, out: Path, flag: str = "--out", can_overwrite: bool = True) -> str:
    """`can_overwrite`: the command has --overwrite (else it updates its own folders in place)."""
    if isinstance(exc, OutputOverlapError):
        return f"pass a {flag} outside every input"
    if isinstance(exc, OutputNotOursError):
        return f"pass a new folder to {flag}" + (" (--overwrite replaces only folders dq-edge wrote)" if can_overwrite else "")
    if isinstance(exc, OutputExistsError):
        if out.exists() and not out.is_dir():
            return f"pass a folder path to {flag}; dq-edge never replaces a file"
        return f"pass a new folder to {flag}" + (", or --overwrite to replace a folder dq-edge wrote" if can_overwrite else "")
    if isinstance(exc, OutputBusyError):
        return f"wait for the other dq-edge command to finish, or pass another {flag}"
    return f"pass a writable folder to {flag}"


def _with_flag(exc: OutputError, out: Path, flag: str, can_overwrite: bool = True) -> OutputError:
    return type(exc)(exc.message, flag_hint(exc, out, flag, can_overwrite))


def check_cli_output(out: Path, inputs: Iterable[str | os.PathLike | None] = (), overwrite: bool = False,
                     keep_existing: bool = False, flag: str = "--out", can_overwrite: bool = True) -> Path:
    """The checks of `claim_cli_output` without taking the lock (for commands whose library call
    claims the folder itself); returns the resolved path."""
    try:
        return check_output(out, list(inputs), overwrite, keep_existing)
    except OutputError as exc:
        raise _with_flag(exc, Path(out), flag, can_overwrite) from None


def check_cli_output_file(out: Path, inputs: Iterable[str | os.PathLike | None] = (), flag: str = "--out") -> Path:
    """A single-file output: outside every input and new (dq_edge.outputs.check_new_file)."""
    try:
        return check_new_file(out, list(inputs))
    except OutputError as exc:
        hint = f"pass a {flag} outside every input" if isinstance(exc, OutputOverlapError) else f"pass a new file name to {flag}"
        raise type(exc)(exc.message, hint) from None


@contextlib.contextmanager
def claim_cli_output(
    out: Path,
    command: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    keep_existing: bool = False,
    flag: str = "--out",
    can_overwrite: bool = True,
) -> Iterator[OutputClaim]:
    stack = contextlib.ExitStack()
    try:
        claim = stack.enter_context(claim_output(out, command, list(inputs), overwrite, keep_existing))
    except OutputError as exc:
        raise _with_flag(exc, Path(out), flag, can_overwrite) from None
    with stack:
        yield claim
