"""Subprocess worker for `dq-edge check`: polygraphy lint on many files in one process.

Run as `python -m dq_edge.export.lint_worker PLAN.json`; PLAN is a list of
{"model", "shapes": {input: [dims]}, "report"}. Polygraphy redirects C-level streams while it
lints, so it runs here, away from the caller's terminal; each report is polygraphy's JSON.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


def lint_one(model: str, shapes: dict[str, list[int]], report: str) -> int:
    from polygraphy.tools.check.subtool.lint import Lint

    tool = Lint()
    parser = tool.setup_parser()
    shape_args = [f"{name}:{dims}".replace(" ", "") for name, dims in shapes.items()]
    args = parser.parse_args([model, "-o", report, "-q", "--input-shapes", *shape_args])
    tool.parse(args)
    return int(tool.run(args) or 0)


def main(argv: list[str]) -> int:
    plan = json.loads(open(argv[0]).read())
    status = 0
    for job in plan:
        with contextlib.redirect_stdout(io.StringIO()):
            status |= lint_one(job["model"], job["shapes"], job["report"])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
