"""fp16 / int8 / w8 / w4 accuracy and ONNX Runtime CPU speed versus fp32 for one model.

    python benchmarks/export_accuracy.py MODEL [--precisions fp16,int8,w8,w4] [--calib SPEC]
        [--eval SPEC] [--num-eval N] [--calib-num N] [--threads T] [--repeats R]
        [--weight-only-heads quantize|exclude] [--out-dir benchmarks/results]

MODEL is a model folder, or a preset name (`tiny`, `emoji64`) for a randomly initialised
VAE + transformer with fixed seeds: such numbers are labelled "random-init" everywhere, since
a random model's near-uniform logits make greedy agreement a harsher test than a trained
model's. The model is exported (fp32 and --precisions) into a temp folder with the export
library; int8 is calibrated on --calib images, the metrics are measured on disjoint --eval
images. w8/w4 quantize only the transformer graphs: their encoder/dgc/decoder are fp32 copies,
so their reconstruction PSNR drop and code agreement are exactly 0 dB / 100 % by construction.
`--weight-only-heads exclude` keeps the output heads fp32 (the measurement behind the default).
Default images: emoji-64 train/test when the model is 64 px and `dq-edge data prepare emoji64`
was run, else the bundled sample images (center-cropped and resized; first half calibration,
second half evaluation).
Writes benchmarks/results/export_accuracy-<model>[-<suffix>].json and .md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "dq_edge" / "assets" / "samples"


def build_model(spec: str, folder: Path) -> tuple[Path, str]:
    """A model folder and its label."""
    if Path(spec).is_dir():
        return Path(spec), f"model folder {spec}"
    from dq_edge.models.transformer import build_transformer, save_transformer
    from dq_edge.models.vae import build_vae, save_vae

    vae = build_vae(spec, seed=0)
    save_vae(vae, folder)
    save_transformer(build_transformer(spec, vae.token_layout(), seed=1), folder)
    return folder, f"{spec} preset, random-init (seeds 0/1), untrained"


def image_sets(size: int, calib: str | None, evals: str | None, calib_num: int, num_eval: int):
    """(calibration folder or dataset name, its source label, eval images float32 [N,3,H,W])."""
    from dq_edge.data.batches import to_float
    from dq_edge.data.registry import load_dataset

    if calib or evals:
        load_dataset(calib or evals, split="train", image_size=size)  # fail early on a bad calibration spec
        ev = load_dataset(evals or calib, split="test", image_size=size)  # a folder without test/ is used whole
        return calib or evals, to_float(ev.subset(num_eval).images), f"calibration {calib or evals}, eval {evals or calib}"
    try:
        load_dataset("emoji64", split="train", image_size=size)
        ev = load_dataset("emoji64", split="test", image_size=size).subset(num_eval)
        return "emoji64", to_float(ev.images), f"emoji64 train (calibration, first {calib_num}) / test (eval, first {len(ev)})"
    except Exception:  # noqa: BLE001 - not prepared or another size: fall back to the samples
        pass
    samples = load_dataset(str(SAMPLES), split="all", image_size=size)
    half = len(samples) // 2
    cal_dir = Path(tempfile.mkdtemp(prefix="calib-"))
    from PIL import Image

    for i, img in enumerate(samples.images[:half]):
        Image.fromarray(img).save(cal_dir / f"{i}.png")
    ev = to_float(samples.images[half:])
    return str(cal_dir), ev, f"bundled samples resized to {size}px: {half} calibration, {len(ev)} eval"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def to_markdown(result: dict) -> str:
    lines = [
        f"# Export accuracy: {result['model']}",
        "",
        f"- model: {result['label']}",
        f"- images: {result['images_source']}",
        f"- ONNX Runtime {result['onnxruntime']} CPU, {result['threads']} thread(s), {result['machine']}"
        f" (1-min load average at the end: {result['load_average_1min_at_end']:.1f}; speed ratios are measured"
        " alternately in one run, absolute times depend on that load)",
        f"- command: `{result['command']}`",
        f"- fp32 reconstruction PSNR: {result['report']['fp32_reconstruction_psnr']:.2f} dB",
        "",
        "| precision | max logit err (pos / content) | mean logit err (pos / content) | greedy agreement | decoder PSNR vs fp32 | recon PSNR drop | code agreement |",
        "|---|---|---|---|---|---|---|",
    ]
    for p, e in result["report"]["precisions"].items():
        t = e.get("tokens")
        if t:
            tok = (
                f"{t['position_max_logit_error']:.4f} / {t['content_max_logit_error']:.4f} "
                f"| {t['position_mean_logit_error']:.5f} / {t['content_mean_logit_error']:.5f} "
                f"| {100 * t['greedy_agreement']:.2f} % ({t['position_rows'] + t['content_rows']} rows)"
            )
        else:
            tok = "n/a (no transformer) | n/a | n/a"
        lines.append(
            f"| {p} | {tok} | {e['decoder_psnr_vs_fp32']:.2f} dB | {e['reconstruction_psnr_drop']:.3f} dB | {100 * e['code_agreement']:.2f} % |"
        )
    lines += ["", "CPU speed (median ms per call, same inputs, measured alternately in one run):", ""]
    lines += ["| precision | graph | fp32 ms | ms | speed-up |", "|---|---|---|---|---|"]
    for p, e in result["report"]["precisions"].items():
        for g, s in e["cpu_speed"].items():
            lines.append(f"| {p} | {g} | {s['fp32_ms']:.3f} | {s['ms']:.3f} | {s['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def _parity(args, model: Path, label: str, source: str, eval_images, out: Path) -> int:
    """fp32 export + torch parity on the first --max-batch eval images (item 3 numbers)."""
    from dq_edge.atomic import write_json, write_text
    from dq_edge.export.graphs import load_models
    from dq_edge.export.parity import torch_parity
    from dq_edge.export.pipeline import ExportRequest, export_model

    export_model(ExportRequest(model=model, out=out, precisions=["fp32"], max_batch=args.max_batch))
    result = torch_parity(out, load_models(model), eval_images[: args.max_batch])
    name = Path(args.model).name if Path(args.model).is_dir() else args.model
    doc = {"model": name, "label": label, "images_source": source, "command": "python benchmarks/export_accuracy.py " + " ".join(sys.argv[1:]), "parity": result}
    write_json(args.out_dir / f"export_parity-{name}.json", doc)
    md = [f"# fp32 parity, ONNX Runtime CPU vs torch: {name}", "", f"- model: {label}", f"- images: {source}", f"- command: `{doc['command']}`", "",
          "| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in result.items()]
    write_text(args.out_dir / f"export_parity-{name}.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="model folder or preset (tiny, emoji64) for a random-init model")
    ap.add_argument("--calib", help="calibration images: dataset name or folder")
    ap.add_argument("--eval", dest="evals", help="evaluation images: dataset name or folder")
    ap.add_argument("--calib-num", type=int, default=32)
    ap.add_argument("--precisions", default="fp16,int8,w8,w4", help="compared against fp32")
    ap.add_argument("--weight-only-heads", choices=("quantize", "exclude"), default=None, help="override the w8/w4 head policy")
    ap.add_argument("--suffix", default="", help="appended to the results file names")
    ap.add_argument("--num-eval", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--parity-only", action="store_true", help="only fp32 parity vs torch (export_parity-<model>.json/.md)")
    args = ap.parse_args(argv)

    import onnxruntime

    from dq_edge import precisions as table
    from dq_edge.export import weight_only
    from dq_edge.export.accuracy import accuracy_report
    from dq_edge.export.graphs import load_models
    from dq_edge.export.pipeline import ExportRequest, export_model

    with tempfile.TemporaryDirectory(prefix="export-accuracy-") as tmp:
        model, label = build_model(args.model, Path(tmp) / "model")
        size = load_models(model).image_size
        calib, eval_images, source = image_sets(size, args.calib, args.evals, args.calib_num, args.num_eval)
        if args.parity_only:
            return _parity(args, model, label, source, eval_images, Path(tmp) / "export")
        is_dataset = not Path(calib).is_dir()
        lower = [p for p in table.parse_list(args.precisions) if p != "fp32"]
        if args.weight_only_heads is not None:
            weight_only.QUANTIZE_HEADS = args.weight_only_heads == "quantize"
        req = ExportRequest(
            model=model, out=Path(tmp) / "export", precisions=["fp32", *lower], max_batch=args.max_batch,
            calib_dataset=calib if is_dataset else None, calib_images=None if is_dataset else Path(calib),
            calib_num=args.calib_num,
        )
        t0 = time.perf_counter()
        export_model(req, progress=lambda m: print(m, file=sys.stderr))
        export_s = time.perf_counter() - t0
        report = accuracy_report(req.out, eval_images, lower, repeats=args.repeats, threads=args.threads)
    name = (Path(args.model).name if Path(args.model).is_dir() else args.model) + args.suffix
    result = {
        "model": name,
        "label": label,
        "images_source": source,
        "export_seconds": export_s,
        "onnxruntime": onnxruntime.__version__,
        "threads": args.threads,
        "machine": _machine(),
        "load_average_1min_at_end": os.getloadavg()[0],
        "command": "python benchmarks/export_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "weight_only": {"heads_quantized": weight_only.QUANTIZE_HEADS, "block_size": weight_only.BLOCK_SIZE, "accuracy_level": weight_only.ACCURACY_LEVEL},
        "report": report,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    from dq_edge.atomic import write_json, write_text

    write_json(args.out_dir / f"export_accuracy-{name}.json", result)
    write_text(args.out_dir / f"export_accuracy-{name}.md", to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
