"""Entry point: builds the typer app from one module per command group.

Each module `dq_edge/cli/<name>.py` defines `register(app: typer.Typer) -> None`. Modules import
torch / onnx lazily inside their commands so `dq-edge --help` and the torch-free runtime
commands start fast and work on devices that only have numpy + onnxruntime.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import typer

from dq_edge import __version__
from dq_edge.errors import DQEdgeError

COMMAND_MODULES = (
    "data",
    "train",
    "import_official",
    "sample",
    "reconstruct",
    "eval",
    "export",
    "check",
    "build_engine",
    "compare",
    "run",
    "bench",
    "serve",
    "export_triton",
    "encode", "decode",
)

app = typer.Typer(
    name="dq-edge",
    help="Dynamic vector quantization image generation: train, export to ONNX, build TensorRT engines, run and benchmark.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dq-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    # main() strips --debug from anywhere on the line first; this option keeps it in --help
    _state["debug"] = _state["debug"] or debug


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"dq_edge.cli.{_name}")
    except ModuleNotFoundError as exc:  # command group not present in this build
        if exc.name != f"dq_edge.cli.{_name}":
            raise
        continue
    _mod.register(app)


PROG = "dq-edge"
DEBUG_FLAG = "--debug"


def error_line(exc: BaseException, command: str = PROG) -> str:
    if isinstance(exc, DQEdgeError):
        if not exc.hint:  # every error line carries a hint; the command's help is the general one
            return f"error: {_one_line(exc.message)} (hint: see `{command} --help`)"
        return f"error: {_one_line(exc.one_line())}"
    return f"error: {type(exc).__name__}: {_one_line(str(exc))} (hint: rerun with --debug for the traceback and report it)"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _click_base(exc: BaseException, name: str) -> bool:
    # typer >= 0.20 vendors click as typer._click; older typer uses click itself
    return any(cls.__name__ == name and cls.__module__.split(".")[0] in ("click", "typer") for cls in type(exc).__mro__)


def usage_line(exc: BaseException) -> str:
    """click/typer's multi-line usage box -> our one line, pointing at the command's --help."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else PROG
    message = _one_line(exc.format_message()).rstrip(".")
    return f"error: {message} (hint: see `{command} --help`)"


def command_path(args: list[str]) -> str:
    """`dq-edge train vae` for args starting with those names: the command an error belongs to."""
    command = typer.main.get_command(app)
    words = [PROG]
    for arg in args:
        sub = getattr(command, "commands", {}).get(arg)
        if sub is None:
            break
        words.append(arg)
        command = sub
    return " ".join(words)


def split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """`--debug` is accepted anywhere on the line (the error hint says "rerun with --debug", and
    users append it after the command), not only before the command as typer would require."""
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut:]
    else:
        head, tail = argv, []
    return [a for a in head if a != DEBUG_FLAG] + tail, DEBUG_FLAG in head


def main(argv: list[str] | None = None) -> int:
    """Console script. Exit codes: 0 ok, 1 error, 2 usage."""
    args, debug = split_debug(list(sys.argv[1:] if argv is None else argv))
    _state["debug"] = debug or bool(os.environ.get("DQ_EDGE_DEBUG"))
    try:
        # with standalone_mode=False click returns the code of `raise typer.Exit(n)` instead of raising
        rv = app(args=args, prog_name=PROG, standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        if _click_base(exc, "NoArgsIsHelpError"):  # bare `dq-edge` / `dq-edge eval`: the help itself
            exc.show()
            return exc.exit_code
        if _state["debug"]:
            traceback.print_exc()
        if isinstance(exc, DQEdgeError):
            print(error_line(exc, command_path(args)), file=sys.stderr)
            return exc.exit_code
        if _click_base(exc, "UsageError"):
            print(usage_line(exc), file=sys.stderr)
            return 2
        if _click_base(exc, "ClickException"):
            print(f"error: {_one_line(exc.format_message())} (hint: see `{PROG} --help`)", file=sys.stderr)
            return exc.exit_code
        print(error_line(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
