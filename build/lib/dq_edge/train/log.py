"""Run log: one JSON object per logged step (`log.jsonl`) and a loss-curve PNG drawn from it."""

from __future__ import annotations

import json
from pathlib import Path

from dq_edge.atomic import atomic_path, write_text

LOG_NAME = "log.jsonl"
CURVE_NAME = "loss.png"


def read_log(out: Path) -> list[dict]:
    path = Path(out) / LOG_NAME
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill: everything after it is untrusted
    return rows


def truncate_log(out: Path, last_step: int) -> None:
    """On resume, drop entries past the checkpoint so the log matches the resumed run."""
    rows = [r for r in read_log(out) if r.get("step", -1) <= last_step]  # "step" counts completed steps
    write_text(Path(out) / LOG_NAME, "".join(json.dumps(r) + "\n" for r in rows))


def append_log(out: Path, row: dict) -> None:
    with open(Path(out) / LOG_NAME, "a") as fh:
        fh.write(json.dumps(row) + "\n")


CURVE_KEYS = ("loss_avg", "l1", "perceptual", "codebook", "budget", "g_loss", "d_loss", "content", "position")


def plot_curves(out: Path, keys: tuple[str, ...] = CURVE_KEYS) -> Path | None:
    rows = read_log(out)
    if not rows:
        return None
    try:
        import matplotlib
    except ImportError:  # the curve is a convenience: never lose a finished run over it
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    present = {k for r in rows for k in r}
    for k in (k for k in keys if k in present):
        pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"training losses ({Path(out).name})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    final = Path(out) / CURVE_NAME
    with atomic_path(final) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return final
