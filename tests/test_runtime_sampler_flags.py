"""The shared sampling flags on `dq-edge run`: the official sampler end to end on ONNX Runtime,
extreme but legal values, and flag errors as usage errors."""

from __future__ import annotations

import json

import numpy as np

import export_helpers
from dq_edge.cli.main import main
from dq_edge.generation import SamplingParams, generate_tokens, known_code_maps
from dq_edge.runtime.session import open_runtime


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main(["run", "--engine", str(export_helpers.tiny_export()), "--backend", "ort-cpu", "--threads", "1", "--quiet", *args])
    return code, capsys.readouterr().err


def test_official_sampler_through_run(tmp_path, capsys):
    out = tmp_path / "official"
    code, err = _run(capsys, "--sampler", "official", "--num", "2", "--batch", "1", "--seed", "3", "--out", str(out))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sampling"]["sampler"] == "official"
    tokens = np.load(out / "tokens.npz")
    opened = open_runtime(export_helpers.tiny_export(), "ort-cpu", "fp32", threads=1)
    ref = generate_tokens(opened.backend, opened.layout, 1, None, SamplingParams(sampler="official", seed=3))
    np.testing.assert_array_equal(tokens["content"][0, : ref.lengths[0]], ref.content[0])
    np.testing.assert_array_equal(tokens["codes"][0], known_code_maps(opened.layout, ref)[1][0])


def test_extreme_values_generate(tmp_path, capsys):
    code, err = _run(capsys, "--temperature", "1e-310", "--num", "2", "--out", str(tmp_path / "cold"))
    assert code == 0, err  # the greedy limit, not "position 0 is not legal"
    greedy = tmp_path / "greedy"
    assert _run(capsys, "--greedy", "--num", "2", "--out", str(greedy))[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "cold" / "tokens.npz")["content"], np.load(greedy / "tokens.npz")["content"])


def test_sampling_flag_errors_are_usage_errors(tmp_path, capsys):
    for args, needle in (
        (["--temperature", "nan"], "--temperature"),
        (["--top-k", "0"], "--top-k"),
        (["--sampler", "paper"], "unknown sampler"),
        (["--sampler", "official", "--complete", "x.png"], "--complete"),
    ):
        code, err = _run(capsys, *args, "--out", str(tmp_path / "o"))
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
        assert not (tmp_path / "o").exists()
