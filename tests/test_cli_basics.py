import subprocess
import sys

from dq_edge.cli.main import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "dq-edge" in capsys.readouterr().out


def test_unknown_command_is_usage_error(capsys):
    assert main(["no-such-command"]) == 2


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "dq_edge", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "Usage" in out.stdout


def test_typer_exit_code_propagates():
    import typer

    from dq_edge.cli import main as main_mod

    @main_mod.app.command("_exit-three", hidden=True)
    def _exit_three() -> None:
        raise typer.Exit(3)

    assert main_mod.main(["_exit-three"]) == 3
