"""The bad-input catalogue driver: every case of tests/catalogue_cases_*.py, run in-process.

For each case (see tests/catalogue.py): build the inputs with `setup(tmp_path)`, hash the tree
under tmp_path, run `dq-edge ARGV` through `dq_edge.cli.main.main`, then assert the exit code,
exactly one stderr line `error: ... (hint: ...)` containing `case.expect`, no traceback in either
stream, and the same tree afterwards (nothing written, nothing changed, nothing removed).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from pathlib import Path

import pytest

from catalogue import Case
from dq_edge.cli.main import main

CASE_MODULES = ("catalogue_cases_general", "catalogue_cases_outputs", "catalogue_cases_artifacts")
MIN_CASES = 60
ERROR_LINE = re.compile(r"^error: .+ \(hint: .+\)$")


def _load_cases() -> tuple[list[Case], list[str]]:
    """Cases of every module present; the names of the modules not (yet) written. Only the
    module's own absence is tolerated: an import error inside it must fail loudly."""
    cases: list[Case] = []
    missing: list[str] = []
    for name in CASE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            missing.append(name)
            continue
        cases += module.CASES
    return cases, missing


CASES, MISSING_MODULES = _load_cases()


def tree_snapshot(root: Path) -> tuple[dict[str, str], set[str]]:
    """relative path -> sha256 (files; symlinks by target), and the set of directories."""
    files: dict[str, str] = {}
    dirs: set[str] = set()
    for folder, subdirs, names in os.walk(root):
        rel_folder = Path(folder).relative_to(root)
        for d in subdirs:
            path = Path(folder) / d
            if path.is_symlink():
                files[str(rel_folder / d)] = "symlink:" + os.readlink(path)
            else:
                dirs.add(str(rel_folder / d))
        for n in names:
            path = Path(folder) / n
            if path.is_symlink():
                files[str(rel_folder / n)] = "symlink:" + os.readlink(path)
            elif path.is_file():
                files[str(rel_folder / n)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                files[str(rel_folder / n)] = "special"
    return files, dirs


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_catalogue_size():
    if MISSING_MODULES:
        pytest.skip(f"catalogue modules not present yet: {', '.join(MISSING_MODULES)} ({len(CASES)} cases so far)")
    assert len(CASES) >= MIN_CASES


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, tmp_path_factory, monkeypatch, capsys):
    work = tmp_path / "case"
    work.mkdir()
    # caches live outside the judged tree: a cache is not an output, but it must not be the user's
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DQ_EDGE_CACHE", str(cache / "models"))
    monkeypatch.setenv("DQ_EDGE_DATA", str(cache / "data"))
    monkeypatch.delenv("DQ_EDGE_DEBUG", raising=False)
    values = {"tmp": str(work), **case.setup(work)}
    for key, value in case.env.items():
        monkeypatch.setenv(key, _fill(value, values))
    argv = [_fill(a, values) for a in case.argv]
    before = tree_snapshot(work)
    capsys.readouterr()

    code = main(argv)

    out, err = capsys.readouterr()
    context = f"dq-edge {' '.join(argv)}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in out and "Traceback" not in err, context
    lines = err.splitlines()
    assert len(lines) == 1, context
    assert ERROR_LINE.match(lines[0]), context
    assert case.expect in lines[0], context
    assert code == case.exit_code, context
    after = tree_snapshot(work)
    assert after[1] == before[1], f"directories changed: {sorted(after[1] ^ before[1])}\n{context}"
    changed = sorted(k for k in before[0].keys() | after[0].keys() if before[0].get(k) != after[0].get(k))
    assert not changed, f"files added, changed or removed: {changed}\n{context}"
