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
    _state["debug"] = debug or bool(os.environ.get("DQ_EDGE_DEBUG"))


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"dq_edge.cli.{_name}")
    except ModuleNotFoundError as exc:  # command group not present in this build
        if exc.name != f"dq_edge.cli.{_name}":
            raise
        continue
    _mod.register(app)


def error_line(exc: BaseException) -> str:
    if isinstance(exc, DQEdgeError):
        return f"error: {exc.one_line()}"
    return f"error: {type(exc).__name__}: {exc} (hint: rerun with --debug for the traceback and report it)"


def _is_click_exception(exc: BaseException) -> bool:
    # typer >= 0.20 vendors click as typer._click; older typer uses click itself
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def main(argv: list[str] | None = None) -> int:
    """Console script. Exit codes: 0 ok, 1 error, 2 usage."""
    try:
        # with standalone_mode=False click returns the code of `raise typer.Exit(n)` instead of raising
        rv = app(args=argv, standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        if _is_click_exception(exc):
            exc.show()
            return exc.exit_code
        if _state["debug"]:
            traceback.print_exc()
        print(error_line(exc), file=sys.stderr)
        return exc.exit_code if isinstance(exc, DQEdgeError) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
