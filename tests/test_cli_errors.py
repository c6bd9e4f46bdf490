"""How the CLI ends on errors: one stderr line with a hint, exit 1 / 2, --debug anywhere."""

from __future__ import annotations

import pytest

from dq_edge.cli.main import main, split_debug


@pytest.mark.parametrize(
    "argv, words, command",
    [
        (["run", "--out", "x", "--no-such-flag"], "No such option: --no-such-flag", "dq-edge run"),
        (["sample", "m", "--out", "x", "--num", "many"], "Invalid value for '--num'", "dq-edge sample"),
        (["eval", "recon"], "Missing argument", "dq-edge eval recon"),
        (["no-such-command"], "No such command", "dq-edge"),
    ],
)
def test_usage_errors_are_one_line_exit_2(capsys, argv, words, command):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err
    assert err.rstrip().endswith(f"(hint: see `{command} --help`)")


def test_debug_is_accepted_after_the_command(tmp_path, capsys):
    argv = ["reconstruct", "tiny", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]
    assert main(argv) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main([*argv, "--debug"]) == 1  # after the command, where typer alone would refuse it
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: ")


def test_split_debug_leaves_arguments_after_double_dash():
    assert split_debug(["run", "--debug", "--num", "2"]) == (["run", "--num", "2"], True)
    assert split_debug(["run", "--", "--debug"]) == (["run", "--", "--debug"], False)


def test_an_error_without_a_hint_gets_the_commands_help(tmp_path, capsys):
    # run's own check raises a UsageError without a hint
    assert main(["run", "--out", str(tmp_path / "o"), "--keep-ratio", "0.3"]) == 2
    err = capsys.readouterr().err
    assert err.rstrip().endswith("(hint: see `dq-edge run --help`)") and err.count("\n") == 1
