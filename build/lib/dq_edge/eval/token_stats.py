"""Statistics of dynamic codes (numpy): fine-grain ratio histogram, codebook usage and perplexity per
granularity, tokens per image. Inputs: grain [N,Hc,Wc] (1 = fine) and codes [N,Hf,Wf]."""

from __future__ import annotations

import numpy as np

SPECIAL_TOKENS = 4  # start + EOS per stream (docs/design.md §2)


def _usage(codes: np.ndarray, n_codes: int) -> dict:
    if codes.size == 0:
        return {"count": 0, "used": 0, "usage": 0.0, "perplexity": 0.0}
    counts = np.bincount(codes.ravel(), minlength=n_codes).astype(np.float64)
    p = counts / counts.sum()
    nz = p[p > 0]
    return {
        "count": int(codes.size),
        "used": int((counts > 0).sum()),
        "usage": float((counts > 0).mean()),
        "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
    }


def code_stats(grain: np.ndarray, codes: np.ndarray, n_codes: int, bins: int = 10) -> dict:
    n, hc, wc = grain.shape
    hf, wf = codes.shape[1:]
    fy, fx = hf // hc, wf // wc
    fine_cells = np.repeat(np.repeat(grain, fy, axis=1), fx, axis=2).astype(bool)  # [N, Hf, Wf]
    coarse_codes = codes[:, ::fy, ::fx][grain == 0]  # one code per coarse region (its cells repeat it)
    fine_codes = codes[fine_cells]
    ratio = grain.reshape(n, -1).mean(axis=1)
    n_tok = (grain == 0).reshape(n, -1).sum(1) + fy * fx * grain.reshape(n, -1).sum(1)
    hist, edges = np.histogram(ratio, bins=bins, range=(0.0, 1.0))
    return {
        "num_images": int(n),
        "fine_ratio_mean": float(ratio.mean()),
        "fine_ratio_std": float(ratio.std()),
        "fine_ratio_histogram": {"edges": [round(float(e), 4) for e in edges], "counts": hist.astype(int).tolist()},
        "codes_per_image_mean": float(n_tok.mean()),
        "codes_per_image_min": int(n_tok.min()),
        "codes_per_image_max": int(n_tok.max()),
        "sequence_length_mean": float(n_tok.mean() + SPECIAL_TOKENS),
        "codebook": {
            "size": int(n_codes),
            "all": _usage(np.concatenate([coarse_codes, fine_codes]), n_codes),
            "coarse": _usage(coarse_codes, n_codes),
            "fine": _usage(fine_codes, n_codes),
        },
    }
