"""fp32 parity of an export against its torch model: the numbers item 3 of the export issue
asks for, on any model folder (CI checks the tiny model; the accuracy benchmark reports it
for the shipped one).

On real images: max |encoder error|, grain / code maps identical, max |decoder error|, and
max |logit error| of every step of the images' teacher-forced token sequences driven through
the step graphs (numpy caches, row `step` written by the caller), plus prefill of each whole
sequence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dq_edge.export.drive import cpu_session, run, teacher_forced_steps, token_sequences
from dq_edge.export.graphs import ExportModels
from dq_edge.export.manifest import load_export


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


@torch.no_grad()
def torch_parity(folder: str | Path, models: ExportModels, images: np.ndarray) -> dict[str, Any]:
    """`images` float32 [N,3,H,W] in [-1,1], N <= the export's max batch."""
    info = load_export(folder, "fp32")
    s = {g: cpu_session(p) for g, p in info.files.items()}
    x = torch.from_numpy(images)
    ref_c, ref_f = models.vae.features(x)
    feats = run(s["encoder"], {"image": images})
    feed = {"h_coarse": _np(ref_c), "h_fine": _np(ref_f), **({"image": images} if info.dims.router == "entropy" else {})}
    dgc = run(s["dgc"], feed)
    grain, codes = models.vae.dgc(ref_c, ref_f, x)
    out: dict[str, Any] = {
        "images": int(len(images)),
        "encoder_max_error": float(max(np.abs(feats["h_coarse"] - _np(ref_c)).max(), np.abs(feats["h_fine"] - _np(ref_f)).max())),
        "grain_identical": bool(np.array_equal(dgc["grain"], _np(grain))),
        "codes_identical": bool(np.array_equal(dgc["codes"], _np(codes))),
        "decoder_max_error": float(np.abs(run(s["decoder"], {"codes": _np(codes)})["image"] - _np(models.vae.decode_codes(codes))).max()),
    }
    if models.transformer is None or "transformer_position_step" not in s:
        return out
    from dq_edge.models.kv_steps import Prefill

    content, position, segment, lengths = token_sequences(_np(grain), _np(codes), info.layout)
    errs = {"position": 0.0, "content": 0.0, "prefill": 0.0}
    steps = 0
    for i in range(len(content)):
        T = int(lengths[i])
        tok = tuple(a[i : i + 1, :T] for a in (content, position, segment))
        tf = teacher_forced_steps(s["transformer_position_step"], s["transformer_content_step"], info.dims, "fp32", *tok)
        ref_p, ref_cl = models.transformer(*(torch.from_numpy(a) for a in tok))
        errs["position"] = max(errs["position"], float(np.abs(tf.position_logits - _np(ref_p)).max()))
        errs["content"] = max(errs["content"], float(np.abs(tf.content_logits - _np(ref_cl)).max()))
        pre = run(s["transformer_prefill"], dict(zip(("content", "position", "segment"), tok)))
        ref_pre = Prefill(models.transformer)(*(torch.from_numpy(a) for a in tok))
        names = [o.name for o in s["transformer_prefill"].get_outputs()]
        errs["prefill"] = max(errs["prefill"], max(float(np.abs(pre[n] - _np(r)).max()) for n, r in zip(names, ref_pre)))
        steps += T - 1
    out.update(
        sequences=int(len(content)),
        steps=steps,
        position_logits_max_error=errs["position"],
        content_logits_max_error=errs["content"],
        prefill_max_error=errs["prefill"],
    )
    return out
