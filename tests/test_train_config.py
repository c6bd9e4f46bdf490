"""The training config is typed: YAML strings that are numbers are coerced, wrong types and
out-of-range values are ConfigErrors naming the key (no torch needed)."""

from __future__ import annotations

import pytest

from dq_edge.cli.main import main
from dq_edge.errors import ConfigError
from dq_edge.train.config import build_config


def _yaml(tmp_path, text: str):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_yaml_numbers_written_as_strings_are_coerced(tmp_path):
    cfg = build_config(_yaml(tmp_path, "lr: 2e-4\nsteps: '12'\nprogress: 'false'\n"))  # PyYAML reads 2e-4 as a str
    assert cfg.lr == 2e-4 and isinstance(cfg.lr, float) and cfg.steps == 12 and cfg.progress is False


@pytest.mark.parametrize(
    "text, key, words",
    [
        ("lr: fast\n", "lr", "valid number"),
        ("batch: -1\n", "batch", "greater than or equal to 1"),
        ("steps: 1.5\n", "steps", "fractional part"),
        ("lr: .nan\n", "lr", "finite number"),
        ("ema_decay: 1.0\n", "ema_decay", "less than 1"),
        ("router_mode: sideways\n", "router_mode", "'dynamic'"),
        ("threads: -2\n", "threads", "greater than or equal to 0"),
    ],
)
def test_bad_values_name_their_key(tmp_path, text, key, words):
    with pytest.raises(ConfigError) as info:
        build_config(_yaml(tmp_path, text))
    assert f": {key}: " in info.value.message and words in info.value.message and key in info.value.hint


def test_cli_reports_one_line(tmp_path, capsys):
    assert main(["train", "vae", "--config", str(_yaml(tmp_path, "lr: [1, 2]\n")), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: invalid training config") and "lr:" in err
    assert not (tmp_path / "run").exists()
