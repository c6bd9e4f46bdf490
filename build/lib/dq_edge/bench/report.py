"""Terminal tables (rich) and markdown for `dq-edge bench` results."""

from __future__ import annotations

from rich.table import Table

# (call timed by bench_vae, stage inside that call as the backend names it)
STAGE_ROWS = (("encode", "encoder"), ("encode", "dgc"), ("decode", "decoder"))


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def stage_rows(batch_record: dict) -> list[tuple[str, float | None, float | None, str]]:
    """(stage, p50 ms, p90 ms, note) rows of one batch size, stages in pipeline order."""
    rows: list[tuple[str, float | None, float | None, str]] = []
    vae = batch_record["vae"]
    for call, stage in STAGE_ROWS:
        rec = vae.get(call, {})
        if "unavailable" in rec:
            rows.append((stage, None, None, "not in this export"))
        elif stage in rec:
            rows.append((stage, rec[stage]["p50"], rec[stage]["p90"], "backend timer"))
    for step, rec in batch_record["steps"].items():
        for stage in ("position_step", "content_step"):
            if stage in rec:
                rows.append((f"{stage.replace('_', ' ')} @ {step}", rec[stage]["p50"], rec[stage]["p90"], "backend timer"))
        rows.append((f"token (both steps) @ {step}", rec["wall"]["p50"], rec["wall"]["p90"], "wall clock"))
    gen = batch_record["generation"]
    rows.append((f"{gen['tokens_per_image']:.0f} tokens/image (fine ratio {gen['fine_ratio']})", gen["wall"]["p50"], gen["wall"]["p90"], gen["mode"]))
    return rows


def throughput_line(batch_record: dict) -> str:
    gen = batch_record["generation"]
    parts = [f"{gen['tokens_per_s']:.1f} tokens/s", f"{gen['images_per_s']:.3f} images/s (tokens only)"]
    if "images_per_s_with_decoder" in gen:
        parts.append(f"{gen['images_per_s_with_decoder']:.3f} images/s (tokens + decoder)")
    return ", ".join(parts)


def bench_tables(result: dict) -> list[Table]:
    m = result["machine"]
    tables = []
    for run in result["runs"]:
        for rec in run["batches"]:
            title = f"{run['backend']} {run['precision']}  batch {rec['batch']}  ({m['cpu']}, {m['cores_usable']} cores)"
            table = Table(title=title, caption=throughput_line(rec) + f"; peak RSS {result['peak_rss_mib']} MiB")
            table.add_column("stage")
            table.add_column("p50 ms", justify="right")
            table.add_column("p90 ms", justify="right")
            table.add_column("clock")
            for label, p50, p90, note in stage_rows(rec):
                table.add_row(label, _fmt(p50), _fmt(p90), note)
            tables.append(table)
    return tables


def bench_markdown(result: dict) -> str:
    lines = []
    for run in result["runs"]:
        for rec in run["batches"]:
            lines += [f"### {run['backend']} {run['precision']}, batch {rec['batch']}", "",
                      "| stage | p50 ms | p90 ms | clock |", "|---|---:|---:|---|"]
            lines += [f"| {label} | {_fmt(p50)} | {_fmt(p90)} | {note} |" for label, p50, p90, note in stage_rows(rec)]
            lines += ["", throughput_line(rec), ""]
    return "\n".join(lines)
