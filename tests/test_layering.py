"""The layering contracts in pyproject.toml ([tool.importlinter]) hold: `lint-imports` exits 0.

A violation fails here with import-linter's own report (which import chain breaks which rule)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> list[str]:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).is_file():
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]' (import-linter is a dev dependency)")
    return [exe, "pyproject.toml"]


def test_import_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(_lint_imports(), cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_violation_is_reported(tmp_path):
    """The check is live: a copy of the generation package importing the runtime breaks a contract."""
    pkg = tmp_path / "dq_edge"
    shutil.copytree(ROOT / "dq_edge", pkg, ignore=shutil.ignore_patterns("assets", "__pycache__"))
    (pkg / "generation" / "bad.py").write_text("import dq_edge.runtime.session  # noqa: F401\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(_lint_imports(), cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    assert "dq_edge.generation.bad -> dq_edge.runtime.session" in proc.stdout
