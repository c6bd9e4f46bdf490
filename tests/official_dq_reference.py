"""An independent, functional re-implementation of the official DQ-VAE computations, driven
directly by a state dict in the OFFICIAL key layout, plus a generator of such state dicts
from the key/shape facts. Used by tests/test_import_stage1.py to check the importer without
trusting dq_edge's own modules. Written from the official code's math (GroupNorm eps 1e-6,
swish, 1/sqrt(C) attention, right/bottom pad before stride-2 conv, nearest upsampling,
unfold-based entropy, addmm-free brute-force nearest code over rows 0..K-1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TINY_PARAMS = {
    "encoderconfig": {
        "target": "modules.dynamic_modules.EncoderDual.DualGrainEncoder",
        "params": {
            "ch": 32, "ch_mult": [1, 1, 2], "num_res_blocks": 2, "attn_resolutions": [4, 8], "dropout": 0.0,
            "resamp_with_conv": True, "in_channels": 3, "resolution": 16, "z_channels": 32,
            "router_config": {
                "target": "modules.dynamic_modules.RouterDual.DualGrainFeatureRouter",
                "params": {"num_channels": 32, "normalization_type": "group-32", "gate_type": "2layer-fc-SiLu"},
            },
        },
    },
    "decoderconfig": {
        "target": "modules.dynamic_modules.DecoderPositional.Decoder",
        "params": {
            "ch": 32, "in_ch": 32, "out_ch": 3, "ch_mult": [1, 2], "num_res_blocks": 1, "resolution": 16,
            "attn_resolutions": [8], "latent_size": 8, "window_size": 2, "position_type": "fourier+learned",
        },
    },
    "lossconfig": {
        "target": "modules.losses.vqperceptual_multidisc.VQLPIPSWithDiscriminator",
        "params": {"budget_loss_config": {"target": "modules.dynamic_modules.budget.BudgetConstraint_RatioMSE_DualGrain",
                                          "params": {"target_ratio": 0.5, "gamma": 10.0}}},
    },
    "vqconfig": {
        "target": "modules.vector_quantization.quantize2_mask.VectorQuantize2",
        "params": {"codebook_size": 16, "codebook_dim": 8, "commitment_beta": 0.25, "decay": 0.99, "restart_unused_codes": True},
    },
    "quant_before_dim": 32,
    "quant_after_dim": 8,
}
FEATURE_TARGET = "models.stage1_dynamic.dqvae_dual_feat.DualGrainVQModel"
ENTROPY_TARGET = "models.stage1_dynamic.dqvae_dual_entropy.DualGrainVQModel"


def entropy_params(json_path: str = "thresholds.json", ratio: float = 0.5) -> dict:
    import copy

    p = copy.deepcopy(TINY_PARAMS)
    p["encoderconfig"]["params"]["update_router"] = False
    p["encoderconfig"]["params"]["router_config"] = {
        "target": "modules.dynamic_modules.RouterDual.DualGrainFixedEntropyRouter",
        "params": {"json_path": json_path, "fine_grain_ratito": ratio},
    }
    del p["lossconfig"]["params"]["budget_loss_config"]
    p["entropy_patch_size"] = 4
    p["image_size"] = 16
    return p


# ----- key/shape facts -> official state dict -----
def _conv(sd, name, cin, cout, k):
    sd[f"{name}.weight"] = (cin * k * k, (cout, cin, k, k))
    sd[f"{name}.bias"] = (0, (cout,))


def _norm(sd, name, c):
    sd[f"{name}.weight"] = ("gn_w", (c,))
    sd[f"{name}.bias"] = ("gn_b", (c,))


def _resnet(sd, name, cin, cout):
    _norm(sd, f"{name}.norm1", cin)
    _conv(sd, f"{name}.conv1", cin, cout, 3)
    _norm(sd, f"{name}.norm2", cout)
    _conv(sd, f"{name}.conv2", cout, cout, 3)
    if cin != cout:
        _conv(sd, f"{name}.nin_shortcut", cin, cout, 1)


def _attn(sd, name, c):
    _norm(sd, f"{name}.norm", c)
    for part in ("q", "k", "v", "proj_out"):
        _conv(sd, f"{name}.{part}", c, c, 1)


def official_shapes(params: dict, with_feature_router: bool) -> dict:
    e = params["encoderconfig"]["params"]
    d = params["decoderconfig"]["params"]
    q = params["vqconfig"]["params"]
    sd: dict = {}
    ch, mult, nrb = e["ch"], e["ch_mult"], e["num_res_blocks"]
    _conv(sd, "encoder.conv_in", 3, ch, 3)
    res, cin = e["resolution"], ch
    for i, m in enumerate(mult):
        for j in range(nrb):
            _resnet(sd, f"encoder.down.{i}.block.{j}", cin, ch * m)
            cin = ch * m
            if res in e["attn_resolutions"]:
                _attn(sd, f"encoder.down.{i}.attn.{j}", cin)
        if i != len(mult) - 1:
            _conv(sd, f"encoder.down.{i}.downsample.conv", cin, cin, 3)
            res //= 2
    cfine = cin // (mult[-1] // mult[-2])
    for grain, c in (("coarse", cin), ("fine", cfine)):
        _resnet(sd, f"encoder.mid_{grain}.block_1", c, c)
        _attn(sd, f"encoder.mid_{grain}.attn_1", c)
        _resnet(sd, f"encoder.mid_{grain}.block_2", c, c)
        _norm(sd, f"encoder.norm_out_{grain}", c)
        _conv(sd, f"encoder.conv_out_{grain}", c, e["z_channels"], 3)
    z = e["z_channels"]
    if with_feature_router:
        _norm(sd, "encoder.router.feature_norm_fine", z)
        _norm(sd, "encoder.router.feature_norm_coarse", z)
        sd["encoder.router.gate.0.weight"] = (2 * z, (2 * z, 2 * z))
        sd["encoder.router.gate.0.bias"] = (0, (2 * z,))
        sd["encoder.router.gate.2.weight"] = (2 * z, (2, 2 * z))
        sd["encoder.router.gate.2.bias"] = (0, (2,))
    k, dim = q["codebook_size"], q["codebook_dim"]
    sd["quantize.codebook.weight"] = ("code", (k + 1, dim))
    sd["quantize.codebook.cluster_size_ema"] = ("ema", (k,))
    sd["quantize.codebook.embed_ema"] = ("ema", (k, dim))
    _conv(sd, "quant_conv", params["quant_before_dim"], params["quant_after_dim"], 1)
    _conv(sd, "post_quant_conv", params["quant_after_dim"], params["quant_before_dim"], 1)
    dch, dmult, dnrb = d["ch"], d["ch_mult"], d["num_res_blocks"]
    block_in = dch * dmult[-1]
    _conv(sd, "decoder.conv_in", d["in_ch"], block_in, 3)
    _resnet(sd, "decoder.mid.block_1", block_in, block_in)
    _attn(sd, "decoder.mid.attn_1", block_in)
    _resnet(sd, "decoder.mid.block_2", block_in, block_in)
    res = d["latent_size"]
    for i in reversed(range(len(dmult))):
        for j in range(dnrb + 1):
            _resnet(sd, f"decoder.up.{i}.block.{j}", block_in, dch * dmult[i])
            block_in = dch * dmult[i]
            if res in d["attn_resolutions"]:
                _attn(sd, f"decoder.up.{i}.attn.{j}", block_in)
        if i != 0:
            _conv(sd, f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
            res *= 2
    _norm(sd, "decoder.norm_out", block_in)
    _conv(sd, "decoder.conv_out", block_in, 3, 3)
    _conv(sd, "decoder.position_bias_fourier.lff.ffm.conv", 2, d["in_ch"], 1)
    sd["decoder.position_bias_learned.row_embed.weight"] = ("pos", (d["latent_size"], d["in_ch"]))
    sd["decoder.position_bias_learned.col_embed.weight"] = ("pos", (d["latent_size"], d["in_ch"]))
    return sd


def random_official_state_dict(params: dict, with_feature_router: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, (kind, shape) in official_shapes(params, with_feature_router).items():
        t = torch.randn(shape, generator=g)
        if kind == "gn_w":
            t = 1.0 + 0.1 * t
        elif kind in ("gn_b", 0):
            t = 0.05 * t
        elif kind == "ema":
            t = t.abs()
        elif kind == "pos":
            t = 0.5 * t
        elif isinstance(kind, int):
            t = t / kind**0.5
        out[key] = t
    return out


# ----- the official forward, functional -----
def _gn(sd, name, x):
    return F.group_norm(x, 32, sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6)


def _swish(x):
    return x * torch.sigmoid(x)


def _c(sd, name, x, stride=1, padding=0):
    return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=stride, padding=padding)


def _resnet_f(sd, name, x):
    h = _c(sd, f"{name}.conv1", _swish(_gn(sd, f"{name}.norm1", x)), padding=1)
    h = _c(sd, f"{name}.conv2", _swish(_gn(sd, f"{name}.norm2", h)), padding=1)
    if f"{name}.nin_shortcut.weight" in sd:
        x = _c(sd, f"{name}.nin_shortcut", x)
    return x + h


def _attn_f(sd, name, x):
    h = _gn(sd, f"{name}.norm", x)
    q, k, v = (_c(sd, f"{name}.{p}", h) for p in ("q", "k", "v"))
    b, c, hh, ww = q.shape
    q = q.flatten(2).transpose(1, 2)  # [B, N, C]
    w = torch.softmax(q @ k.flatten(2) / c**0.5, dim=-1)  # [B, Nq, Nk]
    out = (w @ v.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, hh, ww)
    return x + _c(sd, f"{name}.proj_out", out)


def _mid_f(sd, name, x):
    return _resnet_f(sd, f"{name}.block_2", _attn_f(sd, f"{name}.attn_1", _resnet_f(sd, f"{name}.block_1", x)))


def ref_features(sd, params, x):
    e = params["encoderconfig"]["params"]
    n = len(e["ch_mult"])
    h = _c(sd, "encoder.conv_in", x, padding=1)
    res = e["resolution"]
    for i in range(n):
        for j in range(e["num_res_blocks"]):
            h = _resnet_f(sd, f"encoder.down.{i}.block.{j}", h)
            if res in e["attn_resolutions"]:
                h = _attn_f(sd, f"encoder.down.{i}.attn.{j}", h)
        if i == n - 2:
            h_fine = h
        if i != n - 1:
            h = _c(sd, f"encoder.down.{i}.downsample.conv", F.pad(h, (0, 1, 0, 1)), stride=2)
            res //= 2
    out = []
    for grain, t in (("coarse", h), ("fine", h_fine)):
        t = _mid_f(sd, f"encoder.mid_{grain}", t)
        out.append(_c(sd, f"encoder.conv_out_{grain}", _swish(_gn(sd, f"encoder.norm_out_{grain}", t)), padding=1))
    return out[0], out[1]


def ref_feature_gate(sd, h_coarse, h_fine):
    f = F.avg_pool2d(_gn(sd, "encoder.router.feature_norm_fine", h_fine), 2)
    c = _gn(sd, "encoder.router.feature_norm_coarse", h_coarse)
    t = torch.cat([c, f], 1).permute(0, 2, 3, 1)
    t = F.silu(F.linear(t, sd["encoder.router.gate.0.weight"], sd["encoder.router.gate.0.bias"]))
    return F.linear(t, sd["encoder.router.gate.2.weight"], sd["encoder.router.gate.2.bias"])  # [B,Hc,Wc,2]


def ref_entropy(x, patch, legacy):
    """Soft-histogram entropy per patch via nn.Unfold, as the official Entropy module."""
    b = x.shape[0]
    gray = 0.2989 * x[:, 0:1] + 0.5870 * x[:, 1:2] + 0.1140 * x[:, 2:]
    cols = F.unfold(gray, kernel_size=patch, stride=patch).transpose(1, 2)  # [B, L, P*P]
    vals = cols.reshape(-1, patch * patch)
    bins = torch.linspace(0 if legacy else -1, 1, 32)
    k = torch.exp(-0.5 * ((vals.unsqueeze(2) - bins[None, None]) / torch.tensor(0.01)).pow(2))
    pdf = k.mean(dim=1)
    pdf = pdf / (pdf.sum(dim=1, keepdim=True) + 1e-40) + 1e-40
    ent = -(pdf * pdf.log()).sum(dim=1)
    side = x.shape[-1] // patch
    return ent.reshape(b, side, side)


def ref_nearest(sd, z):
    """Brute-force nearest code over rows 0..K-1 (the padding row K is never a candidate)."""
    book = sd["quantize.codebook.weight"][:-1]
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    d = ((flat[:, None, :] - book[None]) ** 2).sum(-1)
    b, _, h, w = z.shape
    return d.argmin(-1).reshape(b, h, w)


def ref_merge_and_code(sd, h_coarse, h_fine, grain):
    up = grain.repeat_interleave(2, -1).repeat_interleave(2, -2).unsqueeze(1)
    merged = torch.where(up == 0, h_coarse.repeat_interleave(2, -1).repeat_interleave(2, -2), h_fine)
    return ref_nearest(sd, _c(sd, "quant_conv", merged))


def ref_decode(sd, params, codes):
    d = params["decoderconfig"]["params"]
    z = F.embedding(codes, sd["quantize.codebook.weight"]).permute(0, 3, 1, 2)
    z = _c(sd, "post_quant_conv", z)
    s = d["latent_size"]
    lin = torch.linspace(-1, 1, s)
    coord = torch.stack([lin.view(1, -1).expand(s, s), lin.view(-1, 1).expand(s, s)])[None]  # x, y
    z = z + torch.sin(_c(sd, "decoder.position_bias_fourier.lff.ffm.conv", coord))
    row = sd["decoder.position_bias_learned.row_embed.weight"]
    col = sd["decoder.position_bias_learned.col_embed.weight"]
    z = z + (row[:, None, :] + col[None, :, :]).permute(2, 0, 1)[None]
    h = _mid_f(sd, "decoder.mid", _c(sd, "decoder.conv_in", z, padding=1))
    res = s
    for i in reversed(range(len(d["ch_mult"]))):
        for j in range(d["num_res_blocks"] + 1):
            h = _resnet_f(sd, f"decoder.up.{i}.block.{j}", h)
            if res in d["attn_resolutions"]:
                h = _attn_f(sd, f"decoder.up.{i}.attn.{j}", h)
        if i != 0:
            h = _c(sd, f"decoder.up.{i}.upsample.conv", F.interpolate(h, scale_factor=2.0, mode="nearest"), padding=1)
            res *= 2
    return _c(sd, "decoder.conv_out", _swish(_gn(sd, "decoder.norm_out", h)), padding=1)
