"""The bad-input catalogue: one table of cases, run by tests/test_bad_input_catalogue.py.

Every case runs one `dq-edge` command in-process on inputs a `setup` function builds under
`tmp_path`, then asserts what a user sees: the exit code, exactly one stderr line of the form
`error: ... (hint: ...)` containing `expect`, no traceback, and nothing left behind (the tree
under `tmp_path` is byte-for-byte what `setup` made: no new file, no temp folder, no user file
changed or lost).

The cases live in three modules, one per area, so they can grow independently:
`catalogue_cases_general.py` (flags, numbers, images, checks, metrics), `catalogue_cases_outputs.py`
(output folders, overwrite, locks) and `catalogue_cases_artifacts.py` (manifests, configs,
checkpoints). Each exports `CASES: list[Case]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# setup(tmp_path) builds the inputs and returns the substitutions for `argv`:
# "{model}" -> str(path) etc. Keep setups cheap: copy the session fixtures, don't re-export.
Setup = Callable[[Path], dict[str, str]]


def no_setup(tmp_path: Path) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Case:
    id: str  # short, unique, kebab-case: "run-class-out-of-range"
    category: str  # the catalogue's table row: "numbers", "images", "output-safety", "artifacts", ...
    argv: list[str]  # after `dq-edge`, with {name} placeholders filled from setup's dict and {tmp}
    expect: str  # substring of the single error line (case-sensitive)
    exit_code: int = 1  # 1 error, 2 usage
    setup: Setup = no_setup
    env: dict[str, str] = field(default_factory=dict)  # extra environment for this case only
