"""Side-by-side table and plot of several `dq-edge eval recon` reports: quality against tokens per
image (the fixed-vs-dynamic comparison). Reads the JSON reports; computes nothing new."""

from __future__ import annotations

import json
from pathlib import Path

from dq_edge.atomic import atomic_path, write_text
from dq_edge.errors import InputError

COLUMNS = ("codes/image", "seq len", "fine ratio", "PSNR", "SSIM", "MS-SSIM", "rFID", "KID mean", "KID std")


def load_report(path: Path) -> dict:
    try:
        rep = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read report {path}: {exc}", "pass JSON files written by `dq-edge eval recon --out`") from exc
    if "codes" not in rep or "psnr" not in rep:
        raise InputError(f"{path} is not a reconstruction report", "pass JSON files written by `dq-edge eval recon --out`")
    return rep


def row(rep: dict) -> list:
    c, f = rep["codes"], rep.get("rfid") or {}
    return [c["codes_per_image_mean"], c["sequence_length_mean"], c["fine_ratio_mean"], rep["psnr"], rep["ssim"],
            rep["ms_ssim"], f.get("fid"), f.get("kid_mean"), f.get("kid_std")]


def _cell(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def compare_markdown(names: list[str], reports: list[dict]) -> str:
    labels = {r.get("rfid", {}).get("label") for r in reports} - {None}
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, rep in zip(names, reports):
        lines.append(f"| {name} | " + " | ".join(_cell(v) for v in row(rep)) + " |")
    lines += ["", "rFID: " + ("; ".join(sorted(labels)) if labels else "not computed"),
              f"MS-SSIM: {reports[0].get('ms_ssim_label', '')}", "", "Commands:"]
    lines += [f"- {name}: `{rep.get('command', '?')}`" for name, rep in zip(names, reports)]
    return "\n".join(lines) + "\n"


def compare_plot(names: list[str], reports: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("PSNR (dB)", 3), ("rFID", 6)] if all(r.get("rfid") for r in reports) else [("PSNR (dB)", 3), ("SSIM", 4)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), dpi=100)
    for ax, (label, col) in zip(axes, metrics):
        for name, rep in zip(names, reports):
            r = row(rep)
            ax.scatter(r[0], r[col], s=40)
            ax.annotate(name, (r[0], r[col]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel("codes per image (mean)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle("reconstruction quality vs tokens per image")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out


def write_comparison(paths: list[Path], names: list[str] | None, out_md: Path, plot: Path | None) -> str:
    reports = [load_report(p) for p in paths]
    names = names or [Path(p).stem for p in paths]
    if len(names) != len(reports):
        raise InputError(f"{len(names)} names for {len(reports)} reports", "pass one --name per report")
    text = compare_markdown(names, reports)
    write_text(out_md, text)
    if plot is not None:
        compare_plot(names, reports, plot)
    return text
