"""Suite results -> targets verdicts, markdown tables, the per-step latency plot, and the
README headline table. Pure functions of the results JSON (re-renderable without re-running)."""

from __future__ import annotations

import statistics
from pathlib import Path

from dq_edge.atomic import atomic_path, write_json, write_text

RUNTIME = "ort-fp32"
KV_CONFIGS = ("torch-kv", "ort-fp32", "ort-int8", "ort-fp16", "ort-w8", "ort-w4")
WEIGHT_ONLY_STEP_GOALS = {"ort-w8": 2.0, "ort-w4": 2.5}  # batch-1 step speed-up over ORT fp32 (issue 14)


def _model(result: dict, name: str) -> dict | None:
    return next((m for m in result["models"] if m["name"] == name), None)


def step_ms(model: dict, config: str, batch: int) -> float | None:
    """Median over the measured prefixes of the per-step p50 (KV steps are flat in p)."""
    pts = model["curves"].get(config, {}).get(str(batch))
    return statistics.median(r["wall"]["p50"] for r in pts.values()) if pts else None


def image_seconds(model: dict, config: str, batch: int, which: str = "dynamic") -> float | None:
    rec = model["per_image_estimated"].get(config, {}).get(str(batch))
    return rec[which]["seconds_per_image"] if rec else None


def floor_ratio(model: dict, config: str, batch: int, key: str = "ratio_to_floor") -> float | None:
    rows = [f[key] for f in model["floors"] if f["config"] == config and f["batch"] == batch and f.get(key) is not None]
    return statistics.median(rows) if rows else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _target(name: str, value: float | None, goal: float, higher_is_better: bool, detail: str) -> dict:
    met = None if value is None else (value >= goal if higher_is_better else value <= goal)
    return {"target": name, "value": None if value is None else round(value, 3), "goal": goal,
            "direction": ">=" if higher_is_better else "<=", "met": met, "detail": detail}


def evaluate_targets(result: dict) -> list[dict]:
    """The issue's targets, measured on the p6c18 dims (None when p6c18 was not run)."""
    m = _model(result, "p6c18")
    if m is None:
        return []
    out = []
    for b, goal in ((1, 15.0), (8, 40.0)):
        value = _ratio(image_seconds(m, "official", b), image_seconds(m, RUNTIME, b))
        best = max(
            ((c, _ratio(image_seconds(m, "official", b), image_seconds(m, c, b))) for c in KV_CONFIGS[1:]),
            key=lambda kv: kv[1] or 0,
        )
        out.append(_target(f"runtime vs official algorithm, batch {b} (per image, integrated)", value, goal, True,
                           f"ORT fp32; best runtime precision {best[0]}: {_f(best[1], '.2f')}x"))
    out.append(_target("ORT fp32 step / bandwidth floor, batch 1", floor_ratio(m, RUNTIME, 1), 1.2, False,
                       "floor = streamed fp32 weight bytes / measured read bandwidth; vs weights + static KV caches: "
                       f"{_f(floor_ratio(m, RUNTIME, 1, 'ratio_to_weights_plus_kv_floor'), '.2f')}x"))
    out.append(_target("ORT int8 vs torch+KV fp32, batch 1 (per step)", _ratio(step_ms(m, "torch-kv", 1), step_ms(m, "ort-int8", 1)), 2.5, True,
                       "median over prefix lengths of the p50 step latency"))
    for config, goal in WEIGHT_ONLY_STEP_GOALS.items():
        out.append(_target(f"ORT {config.removeprefix('ort-')} vs ORT fp32, batch 1 (per step)", _ratio(step_ms(m, RUNTIME, 1), step_ms(m, config, 1)),
                           goal, True, "median over prefix lengths of the p50 step latency"))
    ratios = {c: _ratio(step_ms(m, "torch-kv", 8), step_ms(m, c, 8)) for c in KV_CONFIGS[1:]}
    best = max(ratios.items(), key=lambda kv: kv[1] or 0)
    out.append(_target("runtime vs torch+KV, batch 8 (per step)", ratios[RUNTIME], 1.5, True,
                       f"ORT fp32; best runtime precision {best[0]}: {_f(best[1], '.2f')}x"))
    return out


# ------------------------------------------------------------------------------------ markdown
def _f(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def model_markdown(m: dict) -> list[str]:
    prefixes = m["prefixes"]
    lines = [f"## {m['name']}: {m['label']}", "",
             f"Fine ratio {m['fine_ratio']:.3f} ({m['fine_ratio_source']}): {m['tokens_per_image']} tokens per image; "
             f"all-fine fixed length: {m['tokens_all_fine']} tokens. Streamed parameters per step: {m['streamed_params']:,}.", ""]
    for note in m["notes"]:
        lines.append(f"Note: {note}")
    for config, why in m["unavailable"].items():
        lines.append(f"- `{config}` did not run: {why}")
    lines += ["", "Per-step latency (one position + one content id per sample), p50 ms, at prefix length p; "
              "floor ratio = median step / floor (batch 1: weight bytes / bandwidth; batch 8: FLOPs / GEMM throughput); "
              "per image = integrated over the sequence (see suite_measure.py).", "",
              "| config | batch | " + " | ".join(f"p={p}" for p in prefixes) + " | floor ms (p mid) | x floor | KV read MB | x (weights+KV) floor | s / image (est.) | images/s (est.) | vs official |",
              "|---|---:|" + "---:|" * len(prefixes) + "---:|---:|---:|---:|---:|---:|---:|"]
    for config, per_b in m["curves"].items():
        for b, pts in per_b.items():
            mid = [f for f in m["floors"] if f["config"] == config and str(f["batch"]) == b]
            floor_mid = mid[len(mid) // 2]["floor_ms"] if mid else None
            sec = image_seconds(m, config, int(b))
            lines.append(
                f"| {config} | {b} | " + " | ".join(_f(pts[str(p)]["wall"]["p50"]) if str(p) in pts else "-" for p in prefixes)
                + f" | {_f(floor_mid, '.2f')} | {_f(floor_ratio(m, config, int(b)), '.2f')} | {_f(mid[0]['kv_bytes'] / 1e6 if mid else None, '.0f')} | "
                + f"{_f(floor_ratio(m, config, int(b), 'ratio_to_weights_plus_kv_floor'), '.2f')} | {_f(sec, '.3f')} | "
                + f"{_f(1 / sec if sec else None, '.3f')} | "
                + f"{_f(_ratio(image_seconds(m, 'official', int(b)), sec), '.1f')}x |"
            )
    lines += ["", "Dynamic vs fixed length (same transformer; estimated from the per-step curves):", "",
              "| config | batch | images/s dynamic | images/s all-fine | dynamic / fixed |", "|---|---:|---:|---:|---:|"]
    for config, per_b in m["per_image_estimated"].items():
        for b, rec in per_b.items():
            d, f = rec["dynamic"]["seconds_per_image"], rec["all_fine"]["seconds_per_image"]
            lines.append(f"| {config} | {b} | {_f(1 / d, '.3f')} | {_f(1 / f, '.3f')} | {_f(f / d, '.2f')}x |")
    if m["images_measured"]:
        lines += ["", "Whole images, measured (token replay without sampling + decoder), images/s:", "",
                  "| config | batch | dynamic | all-fine | dynamic / fixed | tokens-only s/image measured | estimated |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        sampled = []
        for config, per_b in m["images_measured"].items():
            for b, rec in per_b.items():
                d, f = rec["dynamic"], rec["all_fine"]
                measured = d["wall"]["p50"] / 1e3 / int(b)
                lines.append(f"| {config} | {b} | {_f(d['images_per_s_with_decoder'], '.2f')} | {_f(f['images_per_s_with_decoder'], '.2f')} | "
                             f"{_f(d['images_per_s_with_decoder'] / f['images_per_s_with_decoder'], '.2f')}x | {_f(measured, '.4f')} | {_f(image_seconds(m, config, int(b)), '.4f')} |")
                if "sampled" in rec:
                    g = rec["sampled"]
                    sampled.append(f"| {config} | {b} | {g['tokens_per_image']:.1f} | {g['fine_ratio']:.3f} | {g['tokens_per_s']:.1f} | {g['images_per_s']:.3f} |")
        if sampled:
            lines += ["", "Real generation through the shared loop (sampling + masks, seed 0, one run; lengths chosen by the model):", "",
                      "| config | batch | tokens/image | fine ratio | tokens/s | images/s (with decoder) |", "|---|---:|---:|---:|---:|---:|"] + sampled
    return lines + [""]


def floors_markdown(floors: dict) -> list[str]:
    lines = ["## Floors (measured in this run)", "", "| working set | read GB/s | copy GB/s |", "|---:|---:|---:|"]
    lines += [f"| {r['size_bytes'] / 2**20:.0f} MiB | {r['read_gbps']} | {r['copy_gbps']} |" for r in floors["bandwidth"]]
    lines += ["", "| GEMM | shape [m,k,n] | GFLOP/s (best) | GFLOP/s (p50) |", "|---|---|---:|---:|"]
    lines += [f"| {g['kind']} | {g['shape']} | {g['gflops']} | {g['gflops_p50']} |" for g in floors["gemm"]]
    return lines + [""]


def targets_markdown(targets: list[dict]) -> list[str]:
    if not targets:
        return ["## Targets", "", "p6c18 was not run: no target verdicts.", ""]
    lines = ["## Targets (p6c18 dims, 256-px lengths)", "", "| target | measured | goal | met | detail |", "|---|---:|---:|---|---|"]
    for t in targets:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {_f(t['value'], '.2f')} | {t['direction']} {t['goal']} | {met} | {t['detail']} |")
    return lines + [""]


def suite_markdown(result: dict) -> str:
    m = result["machine"]
    v = m["versions"]
    head = [
        f"# dq-edge benchmark suite: {m['cpu']}, {m['cores_usable']} cores, {result['created']}", "",
        f"Command: `{result['command']}` ({result['seconds']} s, peak RSS {result['peak_rss_mib']} MiB{', QUICK smoke run' if result['quick'] else ''}).",
        f"Versions: python {v['python']}, torch {v['torch']}, onnxruntime {v['onnxruntime']}, numpy {v['numpy']}, onnx {v['onnx']}, dq-edge {v['dq_edge']}.",
        f"Load average (1/5/15 min) at start {result.get('load_average', {}).get('start')}, at end {result.get('load_average', {}).get('end')} "
        "(a quiet 2-core machine shows < 0.5 at the start).",
        f"Settings: {result['settings']}. TensorRT: not available on this machine (no GPU); every number is CPU.", "",
        "Configurations: `official` = the official sampling algorithm (full-prefix recompute each token, torch eager); "
        "`torch-kv` = torch reference with static KV caches; `ort-*` = the dq-edge runtime on ONNX Runtime CPU at that precision.", "",
    ]
    body = targets_markdown(result["targets"]) + floors_markdown(result["floors"])
    for model in result["models"]:
        body += model_markdown(model)
    return "\n".join(head + body)


def readme_table(result: dict) -> str:
    """Headline ratios for the README (printed by benchmarks/render_readme_table.py)."""
    m = result["machine"]
    lines = [f"Measured on {m['cpu']} ({m['cores_usable']} cores), {result['created'][:10]}, "
             f"`{result['command']}`; every ratio is side by side in one run. s/image = token generation "
             "per image (no decoder), integrated from the per-step latency at 3 prefix lengths; p6c18 has "
             "random weights at the official 256-px dims, emoji64 is " + ", ".join(m["label"] for m in result["models"] if m["name"] == "emoji64") + ".", "",
             "| model | batch | official s/image | torch+KV s/image | ORT fp32 s/image | ORT int8 s/image | ORT w8 s/image | ORT w4 s/image "
             "| ORT fp32 vs official | int8 vs torch+KV | w8 vs fp32 | w4 vs fp32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model in result["models"]:
        for b in model["batches"]:
            secs = {c: image_seconds(model, c, b) for c in ("official", "torch-kv", "ort-fp32", "ort-int8", "ort-w8", "ort-w4")}
            lines.append(
                f"| {model['name']} | {b} | " + " | ".join(_f(secs[c], ".3f") for c in secs)
                + f" | {_f(_ratio(secs['official'], secs['ort-fp32']), '.1f')}x | {_f(_ratio(secs['torch-kv'], secs['ort-int8']), '.2f')}x"
                + f" | {_f(_ratio(secs['ort-fp32'], secs['ort-w8']), '.2f')}x | {_f(_ratio(secs['ort-fp32'], secs['ort-w4']), '.2f')}x |"
            )
    if result["targets"]:
        lines += ["", "| target (p6c18, 256 px) | measured | goal | met |", "|---|---:|---:|---|"]
        for t in result["targets"]:
            lines.append(f"| {t['target']} | {_f(t['value'], '.2f')} | {t['direction']} {t['goal']} | {'n/a' if t['met'] is None else ('yes' if t['met'] else 'no')} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- plot
def write_plot(result: dict, path: Path) -> bool:
    """Per-step latency vs prefix length, one panel per model; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = result["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        for i, (config, per_b) in enumerate(model["curves"].items()):
            for b, pts in per_b.items():
                xs = sorted(int(p) for p in pts)
                ax.plot(xs, [pts[str(x)]["wall"]["p50"] for x in xs], marker="o", color=f"C{i}",
                        linestyle="-" if b == "1" else "--", label=f"{config} b{b}")
        ax.set_yscale("log")
        ax.set_xlabel("prefix length (token index)")
        ax.set_ylabel("ms per token step (p50)")
        ax.set_title(f"{model['name']} ({'random weights' if 'RANDOM' in model['label'] else 'trained'})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"dq-edge per-step latency, {result['machine']['cpu']} ({result['machine']['cores_usable']} cores)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return True


def write_results(result: dict, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md"]
    write_json(paths[0], result)
    write_text(paths[1], suite_markdown(result))
    png = out_dir / f"{stem}.png"
    if write_plot(result, png):
        paths.append(png)
    return paths
