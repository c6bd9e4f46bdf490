"""An independent functional version of the official stage-2 network (StackGPT) forward pass,
driven by a state dict in the OFFICIAL key layout and by the official input format (separate
coarse / fine streams, each with its start token). Written from the math of the official code
(pre-LN blocks, LayerNorm eps 1e-5, -inf causal mask, exact GELU, bias-free heads), without
dq_edge's modules, so it checks the importer and the teacher-forcing API independently.
Also generates official-layout stage-2 state dicts (incl. the `attn.mask` buffers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def official_stage2_shapes(tp: dict) -> dict[str, tuple[int, ...]]:
    C = tp["n_embd"]
    shapes = {
        "pos_emb": (1, tp["block_size"], C),
        "content_emb.weight": (tp["vocab_size"], C),
        "content_coarse_pos_emb.weight": (tp["coarse_position_size"], C),
        "content_fine_pos_emb.weight": (tp["fine_position_size"], C),
        "seg_emb.weight": (tp["segment_size"], C),
        "position_head.0.weight": (C,),
        "position_head.0.bias": (C,),
        "position_head.1.weight": (tp["fine_position_size"], C),
        "content_head.0.weight": (C,),
        "content_head.0.bias": (C,),
        "content_head.1.weight": (tp["vocab_size"], C),
    }
    for stack, n in (("position_transformer", tp["position_layer"]), ("content_transformer", tp["content_layer"])):
        for i in range(n):
            p = f"{stack}.{i}"
            for ln in ("ln1", "ln2"):
                shapes[f"{p}.{ln}.weight"] = (C,)
                shapes[f"{p}.{ln}.bias"] = (C,)
            for lin in ("key", "query", "value", "proj"):
                shapes[f"{p}.attn.{lin}.weight"] = (C, C)
                shapes[f"{p}.attn.{lin}.bias"] = (C,)
            shapes[f"{p}.attn.mask"] = (1, 1, tp["block_size"], tp["block_size"])
            shapes[f"{p}.mlp.0.weight"] = (4 * C, C)
            shapes[f"{p}.mlp.0.bias"] = (4 * C,)
            shapes[f"{p}.mlp.2.weight"] = (C, 4 * C)
            shapes[f"{p}.mlp.2.bias"] = (C,)
    return shapes


def random_stage2_state_dict(tp: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Unprefixed official stage-2 tensors (add `transformer.` for a checkpoint)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in official_stage2_shapes(tp).items():
        if key.endswith("attn.mask"):
            out[key] = torch.tril(torch.ones(shape[-2:])).view(shape)
        elif key.endswith(("ln1.weight", "ln2.weight", "head.0.weight")):
            out[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            out[key] = 0.2 * torch.randn(shape, generator=g)
    return out


def _ln(sd, name, x):
    return F.layer_norm(x, (x.shape[-1],), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)


def _lin(sd, name, x):
    return x @ sd[f"{name}.weight"].T + (sd[f"{name}.bias"] if f"{name}.bias" in sd else 0)


def _block(sd, p, x, heads):
    B, T, C = x.shape
    h = _ln(sd, f"{p}.ln1", x)
    split = lambda t: t.view(B, T, heads, C // heads).transpose(1, 2)  # noqa: E731
    q, k, v = (split(_lin(sd, f"{p}.attn.{n}", h)) for n in ("query", "key", "value"))
    att = q @ k.transpose(-2, -1) / math.sqrt(C // heads)
    att = att.masked_fill(sd[f"{p}.attn.mask"][:, :, :T, :T] == 0, float("-inf")).softmax(-1)
    x = x + _lin(sd, f"{p}.attn.proj", (att @ v).transpose(1, 2).reshape(B, T, C))
    m = _lin(sd, f"{p}.mlp.2", F.gelu(_lin(sd, f"{p}.mlp.0", _ln(sd, f"{p}.ln2", x))))
    return x + m


def official_logits(sd, tp, coarse_content, fine_content, coarse_position, fine_position, coarse_seg, fine_seg):
    """Official teacher forcing: streams [B, Lc] / [B, Lf] (each with its start token) ->
    (position_logits, content_logits) [B, Lc+Lf-1, V]."""
    content = torch.cat([coarse_content, fine_content], 1)[:, :-1]
    pe = torch.cat([sd["content_coarse_pos_emb.weight"][coarse_position], sd["content_fine_pos_emb.weight"][fine_position[:, :-1]]], 1)
    T = pe.shape[1]
    x = sd["content_emb.weight"][content] + pe + sd["pos_emb"][:, :T]
    x = x + sd["seg_emb.weight"][torch.cat([coarse_seg, fine_seg], 1)[:, :-1]]
    for i in range(tp["position_layer"]):
        x = _block(sd, f"position_transformer.{i}", x, tp["n_head"])
    hidden = x
    nxt = torch.cat([sd["content_coarse_pos_emb.weight"][coarse_position[:, 1:]], sd["content_fine_pos_emb.weight"][fine_position]], 1)
    y = hidden + nxt
    for i in range(tp["content_layer"]):
        y = _block(sd, f"content_transformer.{i}", y, tp["n_head"])
    position_logits = _lin(sd, "position_head.1", _ln(sd, "position_head.0", hidden))
    content_logits = _lin(sd, "content_head.1", _ln(sd, "content_head.0", y))
    return position_logits, content_logits
