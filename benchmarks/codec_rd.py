"""Rate-distortion of the .dqt codec beside JPEG, WebP and PNG (issue 16, item 4).

    python benchmarks/codec_rd.py [--model dq_edge/assets/model] [--export DIR] [--num N]
        [--torch-num 16] [--threads 1] [--kid] [--out-dir benchmarks/results/codec]

On the emoji-64 test split (`dq-edge data prepare emoji64`), every image is coded by:
- dq-edge entropy-coded (.dqt, the transformer's probabilities, class = the image's label) and
  fixed-length (`--no-model`), on ONNX Runtime CPU fp32 (the model is exported to a temp
  folder unless --export is given); every file is decoded again and checked pixel for pixel
  against the export's reconstruction (encoder + dgc + decoder);
- the torch backend (model folder) on the first --torch-num images: encode + decode speed and
  the check decode(encode(x)) == `dq-edge reconstruct` (its library function) pixel for pixel;
- JPEG and WebP (Pillow) at several qualities, PNG (lossless reference).
Metrics against the original RGB image (transparency on white): bits per pixel of the whole
file (dq-edge also: payload only), PSNR and SSIM (torchmetrics), and with --kid KID (and FID)
on Inception-2015-12-05 pool3 features. Writes rd-<dataset>.json, .md and .png into --out-dir.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
JPEG_QUALITIES = (1, 5, 10, 20, 30, 50, 70, 90)
WEBP_QUALITIES = (0, 1, 5, 10, 20, 30, 50, 70, 90)
KID_SETTINGS = ("dq-edge entropy", "JPEG q5", "JPEG q10", "JPEG q30", "WebP q0", "WebP q5", "WebP q30")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _pillow_codec(images: np.ndarray, fmt: str, **options) -> tuple[np.ndarray, np.ndarray, float, float]:
    """uint8 [N, H, W, 3] -> (decoded uint8 [N, H, W, 3], bytes per image [N], encode s, decode s)."""
    from PIL import Image

    blobs, sizes = [], []
    start = time.perf_counter()
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format=fmt, **options)
        blobs.append(buf.getvalue())
        sizes.append(len(blobs[-1]))
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])
    return decoded, np.asarray(sizes), encode_s, time.perf_counter() - start


def _quality(decoded: np.ndarray, originals: np.ndarray) -> dict:
    import torch

    from dq_edge.eval.metrics import recon_metrics

    def unit(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0)  # [N, 3, H, W]

    psnr, ssim = [], []
    for lo in range(0, len(decoded), 64):
        m = recon_metrics(unit(decoded[lo : lo + 64]), unit(originals[lo : lo + 64]))
        psnr.append(m["psnr"].numpy())
        ssim.append(m["ssim"].numpy())
    p = np.concatenate(psnr)
    return {"psnr_db": float(np.mean(np.minimum(p, 100.0))), "ssim": float(np.mean(np.concatenate(ssim))), "lossless": bool((decoded == originals).all())}


def _export(model: Path, folder: Path) -> Path:
    from dq_edge.export.pipeline import ExportRequest, export_model

    export_model(ExportRequest(model=model, out=folder, precisions=["fp32"], max_batch=8))
    return folder


def _dq_edge_rows(codec, pixels: np.ndarray, labels: list[int], label: str) -> tuple[list[dict], dict]:
    """Entropy-coded and fixed-length on one backend: rows for the RD table, and the speed."""
    from dq_edge.codec import decode_files, encode_images
    from dq_edge.runtime.images import to_uint8

    n = len(pixels)
    reference = np.concatenate([to_uint8(codec.backend.decode(codec.backend.encode(pixels[lo : lo + 16])[1])) for lo in range(0, n, 16)])
    rows, speed = [], {"backend": codec.backend_name, "precision": codec.precision, "n": n}
    for coder, use_model in (("entropy", True), ("fixed", False)):
        start = time.perf_counter()
        encoded = encode_images(codec, pixels, labels, use_model=use_model)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        decoded = decode_files(codec, [e.data for e in encoded])
        decode_s = time.perf_counter() - start
        exact = int(sum(np.array_equal(decoded[i], reference[i]) for i in range(n)))
        speed[coder] = {"encode_images_per_s": n / encode_s, "decode_images_per_s": n / decode_s, "decode_equals_reconstruction": f"{exact}/{n}"}
        payload = np.array([e.payload_bits for e in encoded], float)
        bound = np.array([e.fixed_bound_bits for e in encoded], float)
        rows.append({
            "method": f"dq-edge {coder}", "setting": label, "n": n,
            "bpp": float(np.mean([e.bpp for e in encoded])),
            "payload_bpp": float(np.mean(payload / encoded[0].pixels)),
            "fixed_bound_bpp": float(np.mean(bound / encoded[0].pixels)),
            "payload_over_fixed_bound": float(np.mean(payload) / np.mean(bound)),
            "mean_codes": float(np.mean([e.n_codes for e in encoded])),
            "mean_fine_ratio": float(np.mean([e.fine_ratio for e in encoded])),
            "decode_equals_reconstruction": f"{exact}/{n}",
            "_decoded": decoded,
        })
    return rows, speed


def _torch_check(model: Path, pixels: np.ndarray, labels: list[int]) -> dict:
    """Torch backend on a subset: speed, and decode(encode(x)) == `dq-edge reconstruct`'s output."""
    import torch

    from dq_edge.codec import decode_files, encode_images, open_model
    from dq_edge.models.reconstruct import reconstruct_to_folder
    from PIL import Image

    codec = open_model(model)
    start = time.perf_counter()
    encoded = encode_images(codec, pixels, labels)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decode_files(codec, [e.data for e in encoded])
    decode_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(f"img{i:04d}.png") for i in range(len(pixels))]
        reconstruct_to_folder(codec.backend.vae, paths, pixels, Path(tmp))
        recon = np.stack([np.asarray(Image.open(Path(tmp) / "recon" / p.name).convert("RGB")) for p in paths])
    exact = int(sum(np.array_equal(decoded[i], recon[i]) for i in range(len(pixels))))
    return {
        "backend": "torch", "precision": "fp32", "n": len(pixels), "torch_threads": torch.get_num_threads(),
        "entropy": {"encode_images_per_s": len(pixels) / encode_s, "decode_images_per_s": len(pixels) / decode_s,
                    "decode_equals_reconstruction": f"{exact}/{len(pixels)}"},
        "payload_bpp": float(np.mean([e.payload_bpp for e in encoded])),
    }


def _kid(sets: dict[str, np.ndarray], originals: np.ndarray) -> dict[str, dict]:
    import torch

    from dq_edge.eval.fid import fid_kid, load_extractor

    extractor = load_extractor()

    def features(x: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([extractor(torch.from_numpy(x[lo : lo + 32].transpose(0, 3, 1, 2).astype(np.float32) / 255.0)) for lo in range(0, len(x), 32)])

    real = features(originals)
    return {name: fid_kid(real, features(x), extractor) for name, x in sets.items()}


def _plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, key, ylabel in ((axes[0], "psnr_db", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        for method, style, qualities in (("JPEG", "o-", JPEG_QUALITIES), ("WebP", "s-", WEBP_QUALITIES)):
            pts = sorted((r["bpp"], r[key]) for r in rows if r["method"] == method)
            ax.plot(*zip(*pts), style, label=f"{method} (Pillow, q {qualities[0]}..{qualities[-1]})")
        for r in rows:
            if r["method"].startswith("dq-edge"):
                ax.plot(r["bpp"], r[key], "*", ms=14, label=f"{r['method']} (file)")
                ax.plot(r["payload_bpp"], r[key], "x", ms=10, label=f"{r['method']} (payload only)")
        png = next(r for r in rows if r["method"] == "PNG")
        ax.axvline(png["bpp"], color="grey", ls=":", label=f"PNG lossless ({png['bpp']:.1f} bpp)")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([0.1, 0.2, 0.5, 1, 2, 5, 10]))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("bits per pixel (log)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _markdown(report: dict) -> str:
    lines = [
        f"# .dqt codec rate-distortion: {report['dataset']} (N={report['n']})", "",
        f"Command: `{report['command']}`  ", f"Machine: {report['machine']['cpu']}, {report['machine']['cores_usable']} usable cores; "
        f"load before: `{report['uptime_before']}`; after: `{report['uptime_after']}` (shared machine: timings are noisy)  ",
        f"Model: {report['model']} (sha256 {report['fingerprint'][:16]}...)", "",
        "| method | setting | bpp (file) | bpp (payload) | PSNR dB | SSIM | " + (f"{report['kid_label']} x1e3 |" if report.get("kid_label") else ""),
        "|---|---|---:|---:|---:|---:|" + ("---:|" if report.get("kid_label") else ""),
    ]
    for r in report["rows"]:
        kid = r.get("kid")
        cells = [r["method"], r["setting"], f"{r['bpp']:.3f}", f"{r['payload_bpp']:.3f}" if "payload_bpp" in r else "",
                 "lossless" if r["lossless"] else f"{r['psnr_db']:.2f}", f"{r['ssim']:.4f}"]
        if report.get("kid_label"):
            cells.append(f"{1e3 * kid['kid_mean']:.2f} ± {1e3 * kid['kid_std']:.2f}" if kid else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Entropy-coded stream vs the fixed-length bound (codes x log2 K / pixels):", ""]
    for r in report["rows"]:
        if r["method"].startswith("dq-edge"):
            lines.append(f"- {r['method']}: payload {r['payload_bpp']:.4f} bpp, bound {r['fixed_bound_bpp']:.4f} bpp, "
                         f"ratio {r['payload_over_fixed_bound']:.3f}; {r['mean_codes']:.1f} codes/image, fine ratio {r['mean_fine_ratio']:.3f}; "
                         f"decode == reconstruction: {r['decode_equals_reconstruction']}")
    lines += ["", "Speed (images/s, one image's tokens at a time; whole-image graphs in groups of 16):", "",
              "| backend | precision | N | coder | encode img/s | decode img/s | decode == reconstruction |", "|---|---|---:|---|---:|---:|---|"]
    for s in report["speed"]:
        for coder in ("entropy", "fixed"):
            if coder in s:
                c = s[coder]
                lines.append(f"| {s['backend']} | {s['precision']} | {s['n']} | {coder} | {c['encode_images_per_s']:.2f} | {c['decode_images_per_s']:.2f} | {c['decode_equals_reconstruction']} |")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "dq_edge" / "assets" / "model")
    ap.add_argument("--export", type=Path, default=None, help="fp32 export of --model (default: export into a temp folder)")
    ap.add_argument("--dataset", default="emoji64")
    ap.add_argument("--num", type=int, default=None, help="first N test images (default: all)")
    ap.add_argument("--torch-num", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime and torch threads")
    ap.add_argument("--kid", action="store_true", help="KID/FID on Inception-2015-12-05 features (slow on CPU)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results" / "codec")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot and table from the JSON in --out-dir")
    args = ap.parse_args(argv)
    stem = args.out_dir / f"rd-{args.dataset}"
    if args.plot_only:
        report = json.loads(stem.with_suffix(".json").read_text())
        title = report.get("plot_title") or f"{report['dataset']}, N={report['n']}: dq-edge (shipped model, ort-cpu fp32) vs Pillow codecs"
        _plot(report["rows"], stem.with_suffix(".png"), title)
        stem.with_suffix(".md").write_text(_markdown(report))
        return 0

    import torch

    from dq_edge.atomic import write_json, write_text
    from dq_edge.bench.machine import machine_info
    from dq_edge.codec import open_model
    from dq_edge.data.batches import to_float
    from dq_edge.data.registry import load_dataset
    from dq_edge.models.folder import read_config

    torch.set_num_threads(args.threads)
    uptime_before = _uptime()
    data = load_dataset(args.dataset, split="test")
    originals = data.images[: args.num]  # uint8 [N, H, W, 3]
    class_names = read_config(args.model).get("data", {}).get("class_names")
    if class_names != data.class_names:
        raise SystemExit(f"the model's classes {class_names} are not the dataset's {data.class_names}")
    labels = [int(c) for c in data.labels[: len(originals)]]
    pixels = to_float(originals)
    with tempfile.TemporaryDirectory() as tmp:
        export = args.export or _export(args.model, Path(tmp) / "export")
        codec = open_model(export, backend="ort-cpu", threads=args.threads)
        dq_rows, ort_speed = _dq_edge_rows(codec, pixels, labels, "ort-cpu fp32, class = label")
    torch_speed = _torch_check(args.model, pixels[: args.torch_num], labels[: args.torch_num])

    rows = []
    decoded_sets = {}
    for r in dq_rows:
        decoded_sets[r["method"]] = r.pop("_decoded")
        rows.append({**r, **_quality(decoded_sets[r["method"]], originals)})
    pixels_per_image = originals.shape[1] * originals.shape[2]
    for fmt, method, settings in (("JPEG", "JPEG", [{"quality": q} for q in JPEG_QUALITIES]),
                                  ("WEBP", "WebP", [{"quality": q, "method": 6} for q in WEBP_QUALITIES]),
                                  ("PNG", "PNG", [{"optimize": True}])):
        for opts in settings:
            decoded, sizes, enc_s, dec_s = _pillow_codec(originals, fmt, **opts)
            setting = f"q{opts['quality']}" if "quality" in opts else "optimize"
            name = f"{method} {setting}" if method != "PNG" else "PNG"
            decoded_sets[name] = decoded
            rows.append({"method": method, "setting": setting, "n": len(originals), "bpp": float(np.mean(8 * sizes / pixels_per_image)),
                         "encode_images_per_s": len(originals) / enc_s, "decode_images_per_s": len(originals) / dec_s,
                         **_quality(decoded, originals)})
    kid_label = None
    if args.kid:
        kids = _kid({k: decoded_sets[k] for k in KID_SETTINGS}, originals)
        for r in rows:
            # both dq-edge coders hold the same tokens, hence decode to the same images (checked above)
            key = "dq-edge entropy" if r["method"].startswith("dq-edge") else f"{r['method']} {r['setting']}"
            if key in kids:
                r["kid"] = kids[key]
        kid_label = f"KID (Inception-2015-12-05, N={len(originals)})"

    info = machine_info()
    report = {
        "dataset": f"{args.dataset} test", "n": len(originals), "model": str(args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model),
        "fingerprint": codec.fingerprint, "command": "python benchmarks/codec_rd.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": info, "versions": info["versions"] | {"constriction": _version("constriction"), "pillow": _version("pillow")},
        "uptime_before": uptime_before, "uptime_after": _uptime(), "kid_label": kid_label,
        "rows": rows, "speed": [ort_speed, torch_speed],
        "plot_title": f"{args.dataset} test, N={len(originals)}: dq-edge (shipped model, {codec.backend_name} fp32) vs Pillow codecs",
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(stem.with_suffix(".json"), report)
    write_text(stem.with_suffix(".md"), _markdown(report))
    _plot(rows, stem.with_suffix(".png"), report["plot_title"])
    print(_markdown(report))
    return 0


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
