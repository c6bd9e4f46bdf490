"""`dq-edge reconstruct`: encode -> decode images with a DQ-VAE and lay out what a person wants to
look at: reconstructions, grain-map overlays and one side-by-side grid (original |
reconstruction | grain map), plus a summary.json with per-image PSNR and fine ratio.

The orchestration of the command (inputs, model, results); the model itself is dq_edge.models,
the folder is written by dq_edge.result_folder. torch is imported inside the functions that run
the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from dq_edge.errors import ConfigError, InputError
from dq_edge.models.vae_config import PRESETS
from dq_edge.result_folder import ResultFiles, unique_stems

SAMPLE_SEED = 0
FINE_TINT = np.array([255, 64, 32], np.float32)  # warm: fine regions (4 codes)
COARSE_TINT = np.array([32, 96, 255], np.float32)  # cool: coarse regions (1 code)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class ImageResult:
    name: str
    psnr_db: float
    fine_ratio: float
    n_codes: int  # tokens this image costs: coarse regions + 4 * fine regions


def bundled_samples() -> list[Path]:
    folder = resources.files("dq_edge") / "assets" / "samples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".png"))


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given; folders contribute their image files (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    if not out:
        raise InputError("no images to reconstruct", "pass image files or a folder that holds PNG/JPEG files")
    return out


def load_images(paths: list[Path], size: int, resize: bool) -> np.ndarray:
    """Files -> float32 [N, 3, size, size] in [-1, 1]; transparency composited on white."""
    from dq_edge.data.pixels import square_resize
    from dq_edge.runtime.images import read_rgb, to_model_input

    arrays = []
    for path in paths:
        rgb = read_rgb(path)
        if rgb.size != (size, size):
            if not resize:
                raise InputError(
                    f"{path} is {rgb.size[0]}x{rgb.size[1]} pixels, the model takes {size}x{size}",
                    "pass --resize to center-crop and resize it, or use images of the model's size",
                )
            rgb = square_resize(rgb, size)
        arrays.append(to_model_input(rgb))  # [3, H, W]
    return np.stack(arrays)


def grain_overlay(image_u8: np.ndarray, grain: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] + grain [Hc, Wc] -> tinted image with region (and fine sub-cell) borders."""
    h, w, _ = image_u8.shape
    hc, wc = grain.shape
    ry, rx = h // hc, w // wc
    cell = np.kron(grain, np.ones((ry, rx), np.int64))[..., None]  # [H, W, 1]
    tint = np.where(cell == 1, FINE_TINT, COARSE_TINT)
    out = 0.55 * image_u8.astype(np.float32) + 0.45 * tint
    ys, xs = np.arange(h), np.arange(w)
    border = (ys[:, None] % ry == 0) | (xs[None, :] % rx == 0)
    half = ((ys[:, None] % ry == ry // 2) | (xs[None, :] % rx == rx // 2)) & (cell[..., 0] == 1)
    out[border | half] = 40.0
    return np.clip(out, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def is_preset(spec: str) -> bool:
    """A preset name, unless a folder of that name exists (folders win)."""
    return spec in PRESETS and not Path(spec).is_dir()


def model_image_size(spec: str) -> int:
    if is_preset(spec):
        return PRESETS[spec].image_size
    if not Path(spec).exists():
        raise ConfigError(f"{spec!r} is neither a model folder nor a preset", f"presets: {', '.join(PRESETS)}")
    from dq_edge.models.folder import read_config

    return int(read_config(spec)["vae"]["image_size"])


def model_from_spec(spec: str, images: np.ndarray | None = None):
    """A model folder, or a preset name -> (vae, description). A preset is a random-init model
    (seed SAMPLE_SEED); an entropy preset takes its thresholds from `images` themselves."""
    import torch

    from dq_edge.models.routers import percentile_thresholds, region_entropy, entropy_bins
    from dq_edge.models.vae import build_vae, load_vae

    if not is_preset(spec):
        model_image_size(spec)  # clear error for a name that is neither
        return load_vae(spec), f"model folder {spec}"
    cfg = PRESETS[spec]
    thresholds = None
    note = ""
    if cfg.router == "entropy":
        if images is None:
            raise InputError("an entropy preset needs images to set its thresholds", "pass images")
        x = torch.from_numpy(images)
        thresholds = percentile_thresholds([region_entropy(x, cfg.entropy_patch_size, entropy_bins(cfg.entropy_bins), cfg.entropy_sigma)])
        note = ", entropy thresholds from these images"
    vae = build_vae(spec, thresholds=thresholds, seed=SAMPLE_SEED).eval()
    return vae, f"preset {spec!r}: RANDOM weights (seed {SAMPLE_SEED}{note}); train or import a model for real reconstructions"


def reconstruct_images(vae, paths: list[Path], images: np.ndarray, batch_size: int = 16) -> tuple[list[ImageResult], ResultFiles]:
    """Per-image results and the files of the result folder: recon/<name>.png, grain/<name>.png,
    grid.png (original | reconstruction | grain map per row) and summary.json."""
    import torch

    from dq_edge.runtime.images import make_grid, to_uint8

    originals = to_uint8(images)
    recons, grains = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start : start + batch_size])
            enc = vae.encode(x)
            recons.append(vae.decode_codes(enc.codes).numpy())
            grains.append(enc.grain.numpy())
    rec_u8 = to_uint8(np.concatenate(recons))
    grain = np.concatenate(grains)
    results, tiles, files = [], [], []
    for i, name in enumerate(unique_stems(paths)):
        overlay = grain_overlay(originals[i], grain[i])
        files += [(f"recon/{name}.png", rec_u8[i]), (f"grain/{name}.png", overlay)]
        tiles += [originals[i], rec_u8[i], overlay]
        n_fine = int(grain[i].sum())
        results.append(ImageResult(name, round(psnr(originals[i], rec_u8[i]), 3), n_fine / grain[i].size, grain[i].size + 3 * n_fine))
    summary = {"columns": ["original", "reconstruction", "grain map (warm = fine, cool = coarse)"], "images": [asdict(r) for r in results]}
    return results, ResultFiles(files, make_grid(np.stack(tiles), columns=3), "summary.json", summary)


def image_inputs(paths: list[Path] | None) -> list[Path]:
    """The command's image inputs: files/folders as given, or the bundled samples."""
    return expand_inputs(paths) if paths else bundled_samples()
