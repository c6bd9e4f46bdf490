"""Print the README's performance table (markdown) from a suite results JSON.

    python benchmarks/render_readme_table.py                    # newest full run in benchmarks/results
    python benchmarks/render_readme_table.py path/to/result.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite_report import readme_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def newest_full_run(folder: Path = RESULTS) -> Path | None:
    runs = [p for p in folder.glob("*.json") if not p.stem.endswith("-quick") and _is_suite(p)]
    return max(runs, key=lambda p: json.loads(p.read_text())["created"], default=None)


def _is_suite(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("kind") == "dq-edge-bench-suite"
    except (json.JSONDecodeError, OSError):
        return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else newest_full_run()
    if path is None or not path.is_file():
        print("error: no suite results found (hint: run `python benchmarks/run_suite.py` first)", file=sys.stderr)
        return 1
    print(readme_table(json.loads(path.read_text())), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
