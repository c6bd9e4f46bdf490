"""An independent, straightforward re-implementation of the official `sample_from_scratch`
(DQ-Transformer, uncond and class2 models), driven by a state dict in the OFFICIAL key layout:
the whole prefix is recomputed every step (no KV cache), the streams are kept separate as in
the official code, and every mask rule is written out per sample as the official code does.
Written from the official code's behaviour, not from dq_edge's generator, so that
tests/test_official_sampler.py checks `--sampler official` independently.

Draws: instead of torch.multinomial, the i-th uniform of a shared stream picks by inverse CDF
(the same stream dq_edge consumes: per step B uniforms for positions, then B for contents),
so sampled runs are comparable token for token; greedy takes the argmax like torch.topk(k=1).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from official_stackgpt_reference import _block, _lin, _ln


def _hidden(sd, tp, content, pos_emb, seg):
    """Position transformer over the whole prefix: [B,T] ids + [B,T,C] grid-position embeddings."""
    T = content.shape[1]
    x = sd["content_emb.weight"][content] + pos_emb + sd["pos_emb"][:, :T] + sd["seg_emb.weight"][seg]
    for i in range(tp["position_layer"]):
        x = _block(sd, f"position_transformer.{i}", x, tp["n_head"])
    return x


def _content_logits(sd, tp, hidden, update_pos_emb):
    y = hidden + update_pos_emb
    for i in range(tp["content_layer"]):
        y = _block(sd, f"content_transformer.{i}", y, tp["n_head"])
    return _lin(sd, "content_head.1", _ln(sd, "content_head.0", y))


def _top_k(logits, k):
    v, _ = torch.topk(logits, k)
    out = logits.clone()
    out[out < v[..., [-1]]] = -float("inf")
    return out


def _top_p(probs, p):
    sorted_probs, idx = torch.sort(probs, dim=-1, descending=True)
    remove = torch.cumsum(sorted_probs, dim=-1) >= p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    probs = probs.masked_fill(remove.scatter(-1, idx, remove), 0.0)
    return probs / probs.sum(-1, keepdim=True)


class _Draws:
    def __init__(self, seed: int, greedy: bool):
        self.rng, self.greedy = np.random.Generator(np.random.PCG64(seed)), greedy

    def __call__(self, logits, top_k, top_p):
        if top_k is not None:
            logits = _top_k(logits, top_k)
        probs = F.softmax(logits.double(), dim=-1)
        if top_p is not None:
            probs = _top_p(probs, top_p)
        u = 1.0 - self.rng.random(probs.shape[0])
        if self.greedy:
            return probs.argmax(-1, keepdim=True)
        cdf = torch.cumsum(probs, -1)
        idx = (cdf < torch.from_numpy(u)[:, None] * cdf[:, -1:]).sum(-1, keepdim=True)
        return idx.clamp(max=probs.shape[1] - 1)


def official_sample(sd, tp, K, coarse_hw, fine_hw, batch, classes=None, seed=0, temperature=1.0,
                    top_k=None, top_p=None, top_k_pos=None, top_p_pos=None, greedy=False):
    """Returns the official outputs (x_coarse, x_fine, x_pos_coarse, x_pos_fine) without the
    start tokens, as `sample_from_scratch` does: LongTensors [B, Tc] / [B, Tf]."""
    Nc, Nf = coarse_hw * coarse_hw, fine_hw * fine_hw
    cls = torch.zeros(batch, 1, dtype=torch.long) if classes is None else torch.tensor(classes).view(-1, 1)
    class_model = classes is not None
    x_coarse, x_pos_coarse = K + 2 + cls, Nc + 2 + cls
    x_seg_coarse = torch.zeros(batch, 1, dtype=torch.long)
    x_fine, x_pos_fine = K + 2 + cls, Nf + 2 + cls
    x_seg_fine = torch.ones(batch, 1, dtype=torch.long)
    draw = _Draws(seed, greedy)
    coarse_tab, fine_tab = sd["content_coarse_pos_emb.weight"], sd["content_fine_pos_emb.weight"]

    def content_mask(logits, flag):
        out = logits.clone()
        for i in range(batch):
            if flag[i] == 0:
                if class_model:
                    out[i, K] = -float("inf")
                    out[i, K + 1:] = -float("inf")
                else:
                    out[i, [K, K + 1, K + 2]] = -float("inf")
            else:
                out[i, :] = -float("inf")
                out[i, K] = logits[i, K]
        return out

    flag = torch.zeros(batch, 1)
    with torch.no_grad():
        while not torch.all(flag.bool()):
            hidden = _hidden(sd, tp, x_coarse, coarse_tab[x_pos_coarse], x_seg_coarse)
            logits = _lin(sd, "position_head.1", _ln(sd, "position_head.0", hidden))[:, -1, :] / temperature
            out = logits.clone()
            for i in range(batch):
                if flag[i] == 0:
                    out[i, x_pos_coarse[i]] = -float("inf")
                    out[i, Nc] = -float("inf")
                    out[i, Nc - 1:] = -float("inf")  # the off-by-one
                    out[i, Nc + 1] = logits[i, Nc + 1]
                else:
                    out[i, :] = -float("inf")
                    out[i, Nc] = logits[i, Nc]
            ix_pos = draw(out, top_k_pos, top_p_pos)
            x_pos_coarse = torch.cat([x_pos_coarse, ix_pos], 1)
            flag = flag + (ix_pos == Nc + 1)
            c_logits = _content_logits(sd, tp, hidden, coarse_tab[x_pos_coarse[:, 1:]])[:, -1, :] / temperature
            ix = draw(content_mask(c_logits, flag), top_k, top_p)
            x_seg_coarse = torch.cat([x_seg_coarse, torch.zeros(batch, 1, dtype=torch.long)], 1)
            x_coarse = torch.cat([x_coarse, ix], 1)

        # fine positions already taken: the first entry (fine SOS, or the coarse class id in class
        # models), the cells of coarse-coded regions, and the fine EOS (given back below)
        taken = []
        for i in range(batch):
            grain = torch.zeros(Nc, dtype=torch.long)
            for p in x_pos_coarse[i, 1:]:
                if p == Nc + 1:
                    break
                grain[p] = 1
            grain = grain.view(coarse_hw, coarse_hw).repeat_interleave(2, 0).repeat_interleave(2, 1).reshape(-1)
            first = x_pos_coarse[i, :1] if class_model else torch.tensor([Nf + 2])
            taken.append(torch.cat([first, torch.arange(Nf)[grain == 1], torch.tensor([Nf + 1])]))
        flag = torch.zeros(batch, 1)
        while not torch.all(flag.bool()):
            content = torch.cat([x_coarse, x_fine], 1)
            pe = torch.cat([coarse_tab[x_pos_coarse], fine_tab[x_pos_fine]], 1)
            hidden = _hidden(sd, tp, content, pe, torch.cat([x_seg_coarse, x_seg_fine], 1))
            logits = _lin(sd, "position_head.1", _ln(sd, "position_head.0", hidden))[:, -1, :] / temperature
            out = logits.clone()
            for i in range(batch):
                if flag[i] == 0:
                    out[i, taken[i]] = -float("inf")
                    out[i, Nf] = -float("inf")
                    out[i, Nf + 1] = logits[i, Nf + 1]
                    if class_model:
                        out[i, Nf + 2:] = -float("inf")
                    else:
                        out[i, Nf + 2] = -float("inf")
                else:
                    out[i, :] = -float("inf")
                    out[i, Nf] = logits[i, Nf]
            ix_pos = draw(out, top_k_pos, top_p_pos)
            x_pos_fine = torch.cat([x_pos_fine, ix_pos], 1)
            taken = [torch.cat([taken[i], ix_pos[i]]) for i in range(batch)]
            flag = flag + (ix_pos == Nf + 1)
            # the content transformer: coarse rows with their OWN position, fine rows with the next one
            update = torch.cat([coarse_tab[x_pos_coarse], fine_tab[x_pos_fine[:, 1:]]], 1)
            c_logits = _content_logits(sd, tp, hidden, update)[:, -1, :] / temperature
            ix = draw(content_mask(c_logits, flag), top_k, top_p)
            x_fine = torch.cat([x_fine, ix], 1)
            x_seg_fine = torch.cat([x_seg_fine, torch.ones(batch, 1, dtype=torch.long)], 1)
    return x_coarse[:, 1:], x_fine[:, 1:], x_pos_coarse[:, 1:], x_pos_fine[:, 1:]


def official_streams_per_sample(x_coarse, x_fine, x_pos_coarse, x_pos_fine, Nc, Nf):
    """Per sample: (coarse positions, coarse codes, fine positions, fine codes) before each EOS."""
    out = []
    for i in range(x_coarse.shape[0]):
        ce = int((x_pos_coarse[i] == Nc + 1).nonzero()[0])
        fe = int((x_pos_fine[i] == Nf + 1).nonzero()[0])
        out.append((x_pos_coarse[i, :ce].tolist(), x_coarse[i, :ce].tolist(), x_pos_fine[i, :fe].tolist(), x_fine[i, :fe].tolist()))
    return out
