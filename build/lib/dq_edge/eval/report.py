"""Evaluation report: one JSON document + the same numbers as a markdown table, written atomically."""

from __future__ import annotations

from pathlib import Path

from dq_edge.atomic import write_json, write_text


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def to_markdown(report: dict) -> str:
    lines = [f"# {report['title']}", "", f"Command: `{report['command']}`", ""]
    lines += ["| metric | value |", "|---|---|"]
    for label, value in report["table"]:
        lines.append(f"| {label} | {_fmt(value)} |")
    stats = report.get("codes")
    if stats:
        h = stats["fine_ratio_histogram"]
        lines += ["", "Fine-grain ratio histogram:", "", "| ratio bin | images |", "|---|---|"]
        for lo, hi, c in zip(h["edges"][:-1], h["edges"][1:], h["counts"]):
            lines.append(f"| {lo:.1f}-{hi:.1f} | {c} |")
        lines += ["", "| codebook | codes seen | used | usage | perplexity |", "|---|---|---|---|---|"]
        for g in ("all", "coarse", "fine"):
            u = stats["codebook"][g]
            lines.append(f"| {g} | {u['count']} | {u['used']} | {u['usage']:.3f} | {u['perplexity']:.1f} |")
    for note in report.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    """`out` is the JSON path; the markdown goes beside it with suffix .md."""
    out = Path(out)
    md = out.with_suffix(".md")
    write_json(out, report)
    write_text(md, to_markdown(report))
    return out, md
