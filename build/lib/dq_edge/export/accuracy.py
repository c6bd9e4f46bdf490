"""fp16 / int8 accuracy and CPU speed versus fp32, all in ONNX Runtime (torch-free).

For each lower precision P of an export folder, on real images:
- tokens: the fp32 graphs encode the images into token sequences; both precisions run them
  teacher-forced through their step graphs: max |logit error| and greedy-token agreement
  (argmax equal) over every valid row, position and content heads;
- decoder: the same code maps decoded by P and by fp32: PSNR(P, fp32);
- reconstruction: encoder -> dgc -> decoder entirely in P vs entirely in fp32: PSNR to the
  input image for both, the drop, and grain / code agreement;
- speed: median seconds per call of every graph, P and fp32 measured side by side.
PSNR is over images clamped to [-1, 1] (data range 2).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from dq_edge.export.drive import cpu_session, run, teacher_forced_steps, token_sequences
from dq_edge.export.manifest import ExportInfo, load_export

Sessions = dict[str, Any]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.clip(a.astype(np.float64), -1, 1)
    b = np.clip(b.astype(np.float64), -1, 1)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(4.0 / mse))


def _cast(feed: dict[str, np.ndarray], session) -> dict[str, np.ndarray]:
    """Float inputs to the dtype the graph declares (fp16 graphs take fp16 features)."""
    types = {i.name: i.type for i in session.get_inputs()}
    out = {}
    for k, v in feed.items():
        if v.dtype.kind == "f":
            v = v.astype(np.float16 if types[k] == "tensor(float16)" else np.float32)
        out[k] = v
    return out


def encode(s: Sessions, image: np.ndarray, router: str) -> tuple[np.ndarray, np.ndarray]:
    feats = run(s["encoder"], {"image": image})
    feed = {"h_coarse": feats["h_coarse"], "h_fine": feats["h_fine"]}
    if router == "entropy":
        feed["image"] = image
    out = run(s["dgc"], _cast(feed, s["dgc"]))
    return out["grain"], out["codes"]


def _token_metrics(ref: Sessions, low: Sessions, info32: ExportInfo, info: ExportInfo, grain, codes) -> dict[str, Any]:
    content, position, segment, lengths = token_sequences(grain, codes, info32.layout)
    stats = {"position": [0.0, 0, 0], "content": [0.0, 0, 0]}  # max err, agree, rows
    for i in range(len(content)):
        T = int(lengths[i])
        tok = tuple(a[i : i + 1, :T] for a in (content, position, segment))
        a = teacher_forced_steps(ref["transformer_position_step"], ref["transformer_content_step"], info32.dims, "fp32", *tok)
        b = teacher_forced_steps(low["transformer_position_step"], low["transformer_content_step"], info.dims, info.precision, *tok)
        for head, x, y in (("position", a.position_logits, b.position_logits), ("content", a.content_logits, b.content_logits)):
            st = stats[head]
            st[0] = max(st[0], float(np.abs(x - y).max()))
            st[1] += int((x.argmax(-1) == y.argmax(-1)).sum())
            st[2] += int(x.shape[1])
    out: dict[str, Any] = {"sequences": int(len(content)), "mean_length": float(lengths.mean())}
    for head, (err, agree, rows) in stats.items():
        out[f"{head}_max_logit_error"] = err
        out[f"{head}_greedy_agreement"] = agree / max(rows, 1)
        out[f"{head}_rows"] = rows
    total_rows = stats["position"][2] + stats["content"][2]
    out["greedy_agreement"] = (stats["position"][1] + stats["content"][1]) / max(total_rows, 1)
    return out


def _median_seconds(session, feed: dict[str, np.ndarray], repeats: int) -> float:
    run(session, feed)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(session, feed)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _speed(ref: Sessions, low: Sessions, info32: ExportInfo, image: np.ndarray, grain, codes, repeats: int) -> dict[str, Any]:
    """Median seconds per call, fp32 and P alternately on the same inputs."""
    feats = run(ref["encoder"], {"image": image})
    feeds = {
        "encoder": {"image": image},
        "dgc": {"h_coarse": feats["h_coarse"], "h_fine": feats["h_fine"], **({"image": image} if info32.dims.router == "entropy" else {})},
        "decoder": {"codes": codes},
    }
    if info32.layout is not None and "transformer_position_step" in ref:
        content, position, segment, _ = token_sequences(grain, codes, info32.layout)
        T = min(int(content.shape[1]), 16)
        tf = teacher_forced_steps(
            ref["transformer_position_step"], ref["transformer_content_step"], info32.dims, "fp32",
            content[:, :T], position[:, :T], segment[:, :T], record=lambda t: t == T - 2,
        )
        feeds["transformer_position_step"] = tf.position_feeds[-1]
        feeds["transformer_content_step"] = tf.content_feeds[-1]
        feeds["transformer_prefill"] = {"content": content[:, :T], "position": position[:, :T], "segment": segment[:, :T]}
    out = {}
    for graph, feed in feeds.items():
        if graph not in ref or graph not in low:
            continue
        t32 = _median_seconds(ref[graph], feed, repeats)
        tlow = _median_seconds(low[graph], _cast(feed, low[graph]), repeats)
        out[graph] = {"fp32_ms": t32 * 1e3, "ms": tlow * 1e3, "speedup": t32 / tlow if tlow else float("nan")}
    return out


def accuracy_report(folder: str | Path, images: np.ndarray, precisions: list[str], repeats: int = 5, threads: int = 1) -> dict[str, Any]:
    """`images` float32 [N,3,H,W] in [-1,1] (real images of the model's size)."""
    info32 = load_export(folder, "fp32")
    ref = {g: cpu_session(p, threads) for g, p in info32.files.items()}
    router = info32.dims.router
    grain32, codes32 = encode(ref, images, router)
    recon32 = run(ref["decoder"], {"codes": codes32})["image"]
    report: dict[str, Any] = {
        "images": int(len(images)),
        "fp32_reconstruction_psnr": psnr(recon32, images),
        "ort_threads": threads,
        "precisions": {},
    }
    for precision in precisions:
        info = load_export(folder, precision)
        low = {g: cpu_session(p, threads) for g, p in info.files.items()}
        grain, codes = encode(low, images, router)
        dec_same_codes = run(low["decoder"], {"codes": codes32})["image"]
        recon = run(low["decoder"], {"codes": codes})["image"]
        entry: dict[str, Any] = {
            "decoder_psnr_vs_fp32": psnr(dec_same_codes, recon32),
            "reconstruction_psnr": psnr(recon, images),
            "reconstruction_psnr_drop": report["fp32_reconstruction_psnr"] - psnr(recon, images),
            "grain_agreement": float((grain == grain32).mean()),
            "code_agreement": float((codes == codes32).mean()),
        }
        if info32.layout is not None and "transformer_position_step" in low:
            entry["tokens"] = _token_metrics(ref, low, info32, info, grain32, codes32)
        entry["cpu_speed"] = _speed(ref, low, info32, images[: info.max_batch], grain32[: info.max_batch], codes32[: info.max_batch], repeats)
        report["precisions"][precision] = entry
    return report
