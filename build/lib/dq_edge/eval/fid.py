"""FID and KID through torchmetrics with the Inception-2015-12-05 extractor; real-set features cached.

Real features depend only on (dataset, split, N, network), so they are computed once and kept in
the data cache as safetensors (`<data>/fid-stats/<key>.safetensors`), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Callable, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dq_edge.atomic import atomic_path
from dq_edge.data.cache import data_root
from dq_edge.errors import InputError
from dq_edge.eval.inception import NETWORK, SHA1, InceptionFeatures, fid_label

Progress = Callable[[int], None]


def extract_features(extractor: torch.nn.Module, batches: Iterable[torch.Tensor], progress: Progress | None = None) -> torch.Tensor:
    """`batches`: float [B,3,H,W] in [-1,1]. Returns [N,2048] float32."""
    out = []
    for x in batches:
        out.append(extractor(((x + 1) / 2).clamp(0, 1)))
        if progress:
            progress(len(x))
    return torch.cat(out)


def stats_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps({**key, "network_sha1": SHA1}, sort_keys=True).encode()).hexdigest()[:16]
    return data_root() / "fid-stats" / f"{digest}.safetensors"


def cached_real_features(key: dict, compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """(features, was_cached). A corrupt cache file is recomputed, never trusted."""
    path = stats_path(key)
    if path.is_file():
        try:
            return load_file(str(path))["features"], True
        except (SafetensorError, OSError, KeyError):
            pass
    feats = compute()
    with atomic_path(path) as tmp:
        save_file({"features": feats.contiguous()}, str(tmp), metadata={"key": json.dumps(key, sort_keys=True)})
    return feats, False


def fid_kid(real: torch.Tensor, fake: torch.Tensor, extractor: torch.nn.Module, kid_subset: int = 100) -> dict:
    """FID and KID (mean, std) between two feature sets, computed by torchmetrics.

    KID averages its unbiased estimate over 50 random subsets of min(kid_subset, N // 2) samples:
    half-size subsets at small N keep the reported std meaningful (with subset = N every subset is
    the whole set and the std is 0 by construction). KID is always reported beside FID: at small
    N it is the less biased number.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(len(real), len(fake))
    if n < 2:
        raise InputError(f"FID/KID need at least 2 images per set, got {len(real)} real and {len(fake)} generated", "pass a larger --num")
    subset = min(kid_subset, max(2, n // 2))
    fid = FrechetInceptionDistance(feature=extractor, normalize=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")  # few thousand features at most here
        kid = KernelInceptionDistance(feature=extractor, normalize=True, subset_size=subset, subsets=50)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    with torch.random.fork_rng():  # KID draws its subsets from the global RNG: fix it so reports reproduce
        torch.manual_seed(0)
        kid_mean, kid_std = kid.compute()
    return {
        "label": fid_label(len(real), len(fake)),
        "network": NETWORK,
        "fid": float(fid.compute()),
        "kid_mean": float(kid_mean),
        "kid_std": float(kid_std),
        "kid_subset_size": subset,
        "n_real": len(real),
        "n_fake": len(fake),
    }


def load_extractor() -> InceptionFeatures:
    return InceptionFeatures()
