"""Import stage-1 (DQ-VAE) checkpoints of the official DQ code into a dq-edge model folder.

Inputs: a Lightning `.ckpt` (weights under `state_dict`, read with weights_only=True) and the
training YAML (`model.target` + `model.params`). The YAML fixes the architecture; every
tensor then maps strictly (missing, unknown or wrongly shaped keys are an error that lists
them). Training-only `loss.*` tensors (LPIPS, discriminator) are dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from dq_edge.errors import CheckpointError, ConfigError
from dq_edge.models.routers import load_thresholds, pick_threshold
from dq_edge.models.vae_config import VAEConfig

FEATURE_MODEL = "dqvae_dual_feat.DualGrainVQModel"
ENTROPY_MODEL = "dqvae_dual_entropy.DualGrainVQModel"
ENCODER = "EncoderDual.DualGrainEncoder"
DECODER = "DecoderPositional.Decoder"
QUANTIZER = "quantize2_mask.VectorQuantize2"
FEATURE_ROUTER = "RouterDual.DualGrainFeatureRouter"
ENTROPY_ROUTER = "RouterDual.DualGrainFixedEntropyRouter"
DROPPED_PREFIXES = ("loss.",)
# official key prefix -> dq-edge key prefix (all other keys are identical)
RENAMES = (
    ("encoder.mid_coarse.", "encoder.coarse.mid."),
    ("encoder.norm_out_coarse.", "encoder.coarse.norm_out."),
    ("encoder.conv_out_coarse.", "encoder.coarse.conv_out."),
    ("encoder.mid_fine.", "encoder.fine.mid."),
    ("encoder.norm_out_fine.", "encoder.fine.norm_out."),
    ("encoder.conv_out_fine.", "encoder.fine.conv_out."),
    ("encoder.router.", "router."),
)
HINT_YAML = "pass the training YAML that belongs to this checkpoint (configs/stage1/*.yml of the official code)"


def _target_is(section: dict[str, Any], suffix: str) -> bool:
    return str(section.get("target", "")).endswith(suffix)


def _section(params: dict[str, Any], name: str, suffix: str) -> dict[str, Any]:
    sec = params.get(name)
    if not isinstance(sec, dict):
        raise ConfigError(f"the YAML has no model.params.{name}", HINT_YAML)
    if not _target_is(sec, suffix):
        raise ConfigError(
            f"unsupported {name} target {sec.get('target')!r} (dq-edge imports {suffix})",
            "only the dual-grain DQ-VAE (feature or entropy router) can be imported",
        )
    return sec.get("params") or {}


def _require_equal(what: str, a: Any, b: Any) -> None:
    if a != b:
        raise ConfigError(f"unsupported YAML: {what} ({a} != {b})", "dq-edge supports the official dual-grain layouts only")


def stage1_kind(target: str) -> str:
    """'feature' | 'entropy' for a stage-1 `model.target`, else a clear error."""
    if target.endswith(FEATURE_MODEL):
        return "feature"
    if target.endswith(ENTROPY_MODEL):
        return "entropy"
    if "triple" in target.lower():
        raise ConfigError(f"model {target!r} is a triple-grain DQ-VAE", "dq-edge imports dual-grain DQ-VAEs only (triple grain is not implemented yet)")
    raise ConfigError(f"unsupported model target {target!r}", f"dq-edge imports {FEATURE_MODEL} and {ENTROPY_MODEL}")


def config_from_params(kind: str, params: dict[str, Any], legacy_bins: bool | None) -> VAEConfig:
    """The YAML's `model.params` of a dual-grain model -> VAEConfig."""
    enc = _section(params, "encoderconfig", ENCODER)
    dec = _section(params, "decoderconfig", DECODER)
    vq = _section(params, "vqconfig", QUANTIZER)
    router_sec = enc.get("router_config") or {}
    router_suffix = FEATURE_ROUTER if kind == "feature" else ENTROPY_ROUTER
    if not _target_is(router_sec, router_suffix):
        raise ConfigError(f"router {router_sec.get('target')!r} does not fit model kind {kind!r}", HINT_YAML)
    rp = router_sec.get("params") or {}
    try:
        z = int(enc["z_channels"])
        ch_mult = tuple(int(m) for m in enc["ch_mult"])
        n_levels = len(ch_mult)
        fine_grid = int(enc["resolution"]) // 2 ** (n_levels - 2)
        _require_equal("quant_before_dim vs encoder z_channels", int(params["quant_before_dim"]), z)
        _require_equal("decoder in_ch vs quant_before_dim", int(dec["in_ch"]), z)
        _require_equal("codebook_dim vs quant_after_dim", int(vq["codebook_dim"]), int(params["quant_after_dim"]))
        _require_equal("decoder resolution vs encoder resolution", int(dec["resolution"]), int(enc["resolution"]))
        _require_equal("decoder latent_size vs fine grid", int(dec.get("latent_size", 32)), fine_grid)
        _require_equal("decoder vs encoder resamp_with_conv", bool(dec.get("resamp_with_conv", True)), bool(enc.get("resamp_with_conv", True)))
        _require_equal("in_channels", int(enc.get("in_channels", 3)), 3)
        _require_equal("out_ch", int(dec.get("out_ch", 3)), 3)
        common = dict(
            image_size=int(enc["resolution"]), ch=int(enc["ch"]), ch_mult=ch_mult,
            num_res_blocks=int(enc["num_res_blocks"]), attn_resolutions=tuple(int(r) for r in enc["attn_resolutions"]),
            z_channels=z, resamp_with_conv=bool(enc.get("resamp_with_conv", True)),
            dropout=float(enc.get("dropout", 0.0)), n_codes=int(vq["codebook_size"]), embed_dim=int(vq["codebook_dim"]),
            commitment_beta=float(vq.get("commitment_beta", 0.25)), ema_decay=float(vq.get("decay", 0.99)),
            restart_unused_codes=bool(vq.get("restart_unused_codes", True)),
            dec_ch=int(dec["ch"]), dec_ch_mult=tuple(int(m) for m in dec["ch_mult"]),
            dec_num_res_blocks=int(dec["num_res_blocks"]),
            dec_attn_resolutions=tuple(int(r) for r in dec.get("attn_resolutions", ())),
            position_type=str(dec.get("position_type", "relative")),
        )
        notes: dict[str, Any] = {}
        if kind == "feature":
            _require_equal("router num_channels vs z_channels", int(rp["num_channels"]), z)
            budget = ((params.get("lossconfig") or {}).get("params") or {}).get("budget_loss_config") or {}
            bp = budget.get("params") or {}
            common.update(
                router="feature", router_norm=str(rp.get("normalization_type", "none")),
                router_gate=str(rp.get("gate_type", "1layer-fc")), update_router=bool(enc.get("update_router", True)),
                target_fine_ratio=float(bp.get("target_ratio", 0.0 if budget else 0.5)), budget_gamma=float(bp.get("gamma", 0.0 if not budget else 1.0)),
                budget_symmetric=bool(bp.get("calculate_all", True)),
            )
        else:
            patch = int(params.get("entropy_patch_size", 16))
            _require_equal("entropy_patch_size vs coarse region size", patch, 2 ** (n_levels - 1))
            _require_equal("image_size vs encoder resolution", int(params.get("image_size", 256)), int(enc["resolution"]))
            bins = "legacy" if legacy_bins is None or legacy_bins else "current"
            notes["entropy_bins"] = (
                "legacy linspace(0,1,32): default for imported official checkpoints (the released weights and "
                "thresholds predate the official switch to linspace(-1,1,32))"
                if legacy_bins is None
                else f"{bins}: chosen at import"
            )
            common.update(
                router="entropy", update_router=False, budget_gamma=0.0, entropy_bins=bins,
                target_fine_ratio=float(rp.get("fine_grain_ratito", 0.5)),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"the YAML's model.params lacks or mangles {exc}", HINT_YAML) from exc
    if common["position_type"] not in ("fourier+learned", "fourier", "learned"):
        raise ConfigError(f"unsupported decoder position_type {common['position_type']!r}", "dq-edge supports fourier+learned, fourier and learned")
    cfg = VAEConfig(**common, notes=notes)
    return cfg.validate()


def resolve_thresholds(
    cfg: VAEConfig, params: dict[str, Any], thresholds: Path | dict | None, yaml_dir: Path | None
) -> tuple[dict[str, float], str]:
    """Thresholds for an entropy model: --thresholds wins, else the YAML's json_path
    (relative paths resolve against the YAML's folder)."""
    if isinstance(thresholds, dict):
        table, source = {str(k): float(v) for k, v in thresholds.items()}, "thresholds"
    else:
        path = Path(thresholds) if thresholds is not None else None
        if path is None:
            rp = params["encoderconfig"]["params"]["router_config"].get("params") or {}
            if not rp.get("json_path"):
                raise ConfigError("the entropy router has no thresholds", "pass --thresholds T.json")
            path = Path(rp["json_path"])
            if not path.is_absolute():
                path = (yaml_dir or Path.cwd()) / path
            if not path.is_file():
                raise ConfigError(f"entropy thresholds {path} (json_path in the YAML) not found", "pass --thresholds T.json")
        table, source = load_thresholds(path), str(path)
    pick_threshold(table, cfg.threshold_key, source)
    return table, source


def map_keys(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official stage-1 keys -> dq-edge keys (unprefixed); returns (mapped, dropped keys)."""
    mapped, dropped = {}, []
    for key, value in sd.items():
        if key.startswith(DROPPED_PREFIXES):
            dropped.append(key)
            continue
        new = key
        for old, ours in RENAMES:
            if key.startswith(old):
                new = ours + key[len(old):]
                break
        mapped[new] = value
    return mapped, dropped


def stage1_from_state_dict(
    sd: dict[str, torch.Tensor],
    params: dict[str, Any],
    thresholds: Path | dict | None,
    legacy_bins: bool | None,
    target: str | None = None,
    yaml_dir: Path | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, bytes]]:
    """Official stage-1 state dict + YAML model.params -> (vae config section, tensors
    prefixed `vae.`, extra files). `target` (model.target) picks feature vs entropy; without it
    the router target in the YAML decides. The config section's `notes` say what was dropped."""
    from dq_edge.models.folder import THRESHOLDS_NAME
    from dq_edge.models.vae import DQVAE, load_state_strict

    if target is None:
        router_target = str((((params.get("encoderconfig") or {}).get("params") or {}).get("router_config") or {}).get("target", ""))
        kind = "entropy" if router_target.endswith(ENTROPY_ROUTER) else "feature"
    else:
        kind = stage1_kind(target)
    cfg = config_from_params(kind, params, legacy_bins)
    table, extra = None, {}
    notes = dict(cfg.notes)
    if kind == "entropy":
        table, source = resolve_thresholds(cfg, params, thresholds, yaml_dir)
        extra[THRESHOLDS_NAME] = (json.dumps(table, indent=1) + "\n").encode()
        notes["thresholds_source"] = Path(source).name
        notes["threshold_key"] = cfg.threshold_key
    mapped, dropped = map_keys(sd)
    if dropped:
        notes["dropped_training_keys"] = len(dropped)
    for key, value in mapped.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint entry {key!r} is not a tensor", "pass a Lightning .ckpt of the official DQ code")
    vae = DQVAE(cfg.with_(notes=notes), table)
    load_state_strict(vae, mapped, "official checkpoint")  # strict: lists missing/unknown/wrong-shape keys
    section = vae.config.to_dict()
    tensors = {f"vae.{k}": v.detach().float().contiguous() for k, v in vae.state_dict().items()}
    return section, tensors, extra


class _InertStub:
    """Stands in for a class a Lightning checkpoint pickled outside its weights (callback types,
    hyper-parameter containers). Accepts any construction args and runs no foreign code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
MAX_STUBBED_GLOBALS = 32


def _load_weights_only(path: Path) -> Any:
    """torch.load(weights_only=True); globals it refuses (e.g. pytorch_lightning callback
    classes beside the weights) are replaced by inert stubs, never imported or called."""
    stubs: list[tuple[type, str]] = []
    while True:
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
            found = _UNSUPPORTED_GLOBAL.search(str(exc))
            name = found.group(1) if found else None
            if name is None or name.startswith("torch.") or len(stubs) >= MAX_STUBBED_GLOBALS:
                first = f"unsupported pickled global {name}" if name else _short_reason(exc)
                raise CheckpointError(
                    f"cannot read checkpoint {path}: {first}",
                    "the file is corrupt or not a torch checkpoint; if it loads in the official code, re-save "
                    "{'state_dict': ckpt['state_dict']} there with torch.save",
                ) from exc
            stubs.append((type(name.rsplit(".", 1)[-1], (_InertStub,), {}), name))


def _short_reason(exc: Exception) -> str:
    text = str(exc).strip()
    inner = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    line = inner.group(1) if inner else (text.splitlines()[0].split(". ")[0] if text else type(exc).__name__)
    return line if len(line) <= 160 else line[:157] + "..."


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Lightning .ckpt (or a bare state dict) -> state dict, without unpickling code."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist", "check the --ckpt path")
    obj = _load_weights_only(path)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors", "pass a Lightning .ckpt of the official DQ code")
    return sd


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"YAML config {path} does not exist", "check the --config path")
    try:
        cfg = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}", HINT_YAML) from exc
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model, dict) or "target" not in model:
        raise ConfigError(f"{path} has no model.target", HINT_YAML)
    return cfg
