"""`dq-edge eval` work: reconstruction (PSNR/SSIM/MS-SSIM, rFID/KID, code statistics) and generation
(FID/KID of samples from a model or a folder of PNGs) against a dataset split."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dq_edge.data import ImageSet, iterate_in_order, load_dataset
from dq_edge.eval.fid import cached_real_features, extract_features, fid_kid, load_extractor
from dq_edge.eval.metrics import msssim_setup, recon_metrics
from dq_edge.eval.token_stats import code_stats
from dq_edge.errors import InputError

Progress = Callable[[int], None]
EVAL_BATCH = 16


def _real_features(extractor, data: ImageSet, spec: str, progress: Progress | None) -> tuple[torch.Tensor, bool]:
    # keyed by the pixels themselves: a re-prepared dataset or an edited folder never hits a stale cache
    pixels = hashlib.sha256(np.ascontiguousarray(data.images).tobytes()).hexdigest()
    key = {"dataset": spec, "split": data.split, "n": len(data), "pixels_sha256": pixels}
    return cached_real_features(
        key, lambda: extract_features(extractor, (torch.from_numpy(b.images) for b in iterate_in_order(data, EVAL_BATCH)), progress)
    )


def _mean(values: list[torch.Tensor]) -> float:
    v = torch.cat(values).double()
    return float(v[torch.isfinite(v)].mean()) if torch.isfinite(v).any() else float("inf")


def eval_recon(model: str, data_spec: str, split: str = "test", num: int | None = None, fid: bool = True,
               progress: Progress | None = None) -> dict:
    from dq_edge.models.vae import load_vae

    vae = load_vae(model)
    data = load_dataset(data_spec, split, image_size=vae.config.image_size).subset(num)
    per: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": [], "ms_ssim": []}
    grains, codes, recons = [], [], []
    with torch.no_grad():
        for b in iterate_in_order(data, EVAL_BATCH):
            x = torch.from_numpy(b.images)
            enc = vae.encode(x)
            rec = vae.decode_codes(enc.codes).clamp(-1, 1)
            for k, v in recon_metrics(rec, x).items():
                per[k].append(v)
            grains.append(enc.grain.numpy())
            codes.append(enc.codes.numpy())
            recons.append(rec)
            if progress:
                progress(len(x))
    stats = code_stats(np.concatenate(grains), np.concatenate(codes), vae.config.n_codes)
    ms_label = msssim_setup(vae.config.image_size).label
    table: list[tuple[str, float]] = [
        ("images", len(data)),
        ("PSNR (dB, mean over images)", _mean(per["psnr"])),
        ("SSIM (Gaussian sigma 1.5)", _mean(per["ssim"])),
        (ms_label, _mean(per["ms_ssim"])),
        ("fine-grain ratio (mean)", stats["fine_ratio_mean"]),
        ("codes per image (mean)", stats["codes_per_image_mean"]),
        ("codebook usage (all)", stats["codebook"]["all"]["usage"]),
        ("codebook perplexity (all)", stats["codebook"]["all"]["perplexity"]),
    ]
    report = {
        "title": f"Reconstruction: {model} on {data_spec}/{split}",
        "model": str(model), "data": data_spec, "split": split, "num_images": len(data),
        "psnr": _mean(per["psnr"]), "ssim": _mean(per["ssim"]), "ms_ssim": _mean(per["ms_ssim"]), "ms_ssim_label": ms_label,
        "codes": stats,
        "notes": ["PSNR/SSIM/MS-SSIM on images scaled to [0,1], reconstructions clamped to [-1,1] first; "
                  "a pixel-exact reconstruction (PSNR = inf) is left out of the PSNR mean."],
    }
    if fid:
        extractor = load_extractor()
        real, cached = _real_features(extractor, data, data_spec, progress)
        fake = extract_features(extractor, recons, progress)
        r = fid_kid(real, fake, extractor)
        r["label"] = r["label"].replace("FID", "rFID", 1)
        report["rfid"] = r
        report["real_features_cached"] = cached
        table += [(r["label"], r["fid"]), (f"KID (subset {r['kid_subset_size']}, mean)", r["kid_mean"]), ("KID std", r["kid_std"])]
    report["table"] = table
    return report


def _generated_images(source: str, num: int, image_size: int | None, seed: int, classes: list[int] | None,
                      sampling: dict) -> tuple[list[torch.Tensor], dict]:
    path = Path(source)
    if (path / "config.json").is_file():
        from dq_edge.models.torch_generate import generate
        from dq_edge.models.transformer import load_transformer
        from dq_edge.models.vae import load_vae

        vae, tr = load_vae(path), load_transformer(path)
        out, done = [], 0
        with torch.no_grad():
            while done < num:
                b = min(EVAL_BATCH, num - done)
                cls = None
                if tr.layout.n_classes:
                    pool = classes or list(range(tr.layout.n_classes))
                    cls = [pool[(done + i) % len(pool)] for i in range(b)]
                g = generate(tr, b, classes=cls, seed=seed + done, **sampling)
                out.append(vae.decode_codes(g.codes).clamp(-1, 1))
                done += b
        return out, {"source_kind": "model", "seed": seed, "sampling": sampling, "classes": "cycled over all classes" if tr.layout.n_classes else None}
    if path.is_dir():
        s = _recorded_samples(path, image_size, num)
        return [torch.from_numpy(b.images) for b in iterate_in_order(s, EVAL_BATCH)], {"source_kind": "run/sample folder", "images_read": len(s)}
    raise InputError(f"{source} is neither a model folder nor a folder of generated samples",
                     "pass a model folder or the output folder of `dq-edge run` / `dq-edge sample`")


def _recorded_samples(folder: Path, image_size: int, num: int) -> ImageSet:
    """The first `num` images a run/sample folder records (never its grid or other PNGs), each
    center-cropped and resized to the real images' size."""
    from dq_edge.data.pixels import pil_to_array, square_resize
    from dq_edge.runtime.images import read_rgb
    from dq_edge.runtime.result_files import recorded_images

    paths = recorded_images(folder)[:num]
    pixels = np.stack([pil_to_array(square_resize(read_rgb(p), image_size)) for p in paths])  # [N, H, W, 3]
    return ImageSet(pixels, None, [], name=str(folder), split="all", meta={"source": "generated samples"})


def eval_gen(source: str, data_spec: str, split: str = "train", num: int = 100, seed: int = 0,
             classes: list[int] | None = None, sampling: dict | None = None, progress: Progress | None = None) -> dict:
    path = Path(source)
    if path.is_dir() and not (path / "config.json").is_file():
        from dq_edge.runtime.result_files import recorded_images

        recorded_images(path)  # a folder without a record fails before the dataset and Inception load
    data = load_dataset(data_spec, split).subset(num)
    fake_imgs, meta = _generated_images(source, num, data.image_size, seed, classes, {k: v for k, v in (sampling or {}).items() if v is not None})
    extractor = load_extractor()
    real, cached = _real_features(extractor, data, data_spec, progress)
    fake = extract_features(extractor, fake_imgs, progress)
    r = fid_kid(real, fake, extractor)
    return {
        "title": f"Generation: {source} vs {data_spec}/{split}",
        "source": str(source), "data": data_spec, "split": split, **meta,
        "fid": r, "real_features_cached": cached,
        "table": [(r["label"], r["fid"]), (f"KID (subset {r['kid_subset_size']}, mean)", r["kid_mean"]), ("KID std", r["kid_std"])],
        "notes": ["At small N, FID is biased upward; compare KID, and compare runs only at equal N."],
    }
