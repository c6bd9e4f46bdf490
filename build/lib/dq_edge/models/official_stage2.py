"""Import stage-2 (DQ-Transformer) checkpoints of the official DQ code.

Called by `dq_edge.models.official_import` when a checkpoint has `transformer.*` keys. The
first stage comes from, in this order: the checkpoint's own `first_stage_model.*` tensors, the
YAML's `first_stage_config.params.ckpt_path` (relative paths resolve against the YAML's
folder), or `--vae FOLDER` (a dq-edge model folder). The result is one model folder holding
both stages. The causal-mask buffers `attn.mask` are dropped (the mask is computed).

Every token id of the YAML (pad / eos / sos / class offsets, vocab sizes) is checked against
dq-edge's layout (docs/design.md §2) and every transformer tensor's shape against the YAML, so a
checkpoint that would silently mis-tokenize is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dq_edge.errors import CheckpointError, ConfigError
from dq_edge.models.folder import THRESHOLDS_NAME, read_config, read_tensors
from dq_edge.models.official_stage1 import read_checkpoint, stage1_from_state_dict
from dq_edge.models.transformer import transformer_from_state
from dq_edge.models.transformer_config import TransformerConfig
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE, TokenLayout

UNCOND_MODEL = "dqtransformer_uncond_entropy.Dualformer"
CLASS_MODEL = "dqtransformer_class2_entropy.Dualformer"
STACKGPT = "stackgpt.StackGPT"
PERMUTER = "permuter.DualGrainSeperatePermuter"
UNCOND_PROVIDER = "label_provider.PositionAwareSOSProvider"
CLASS_PROVIDER = "label_provider.ClassAwareSOSProvider"
HINT = "pass the stage-2 training YAML of this checkpoint (configs/stage2/*.yml of the official code)"


def _params(section: Any, where: str, suffix: str) -> dict[str, Any]:
    if not isinstance(section, dict) or not str(section.get("target", "")).endswith(suffix):
        got = section.get("target") if isinstance(section, dict) else None
        raise ConfigError(f"the YAML's {where} must target {suffix}, got {got!r}", HINT)
    return section.get("params") or {}


def _expect(what: str, yaml_value: Any, ours: int) -> None:
    if yaml_value is None or int(yaml_value) != ours:
        raise ConfigError(
            f"the YAML's {what} is {yaml_value}, dq-edge's token layout needs {ours}",
            "dq-edge imports the official token layout (docs/design.md §2) only",
        )


def _first_stage(
    sd: dict[str, torch.Tensor], params: dict, yaml_dir: Path, vae_folder: Path | None, thresholds, legacy_bins
) -> tuple[dict, dict[str, torch.Tensor], dict[str, bytes], str]:
    """(vae section, `vae.`-prefixed tensors, extra files, where it came from)."""
    fs = params.get("first_stage_config")
    fs_params = (fs or {}).get("params") or {}
    head = "first_stage_model."
    own = {k[len(head):]: v for k, v in sd.items() if k.startswith(head)}
    if own:
        section, tensors, extra = stage1_from_state_dict(
            own, fs_params, thresholds, legacy_bins, target=fs.get("target"), yaml_dir=yaml_dir
        )
        return section, tensors, extra, "first_stage_model.* of the checkpoint"
    ckpt = fs_params.get("ckpt_path")
    if ckpt:
        path = Path(ckpt) if Path(ckpt).is_absolute() else yaml_dir / ckpt
        if path.is_file():
            section, tensors, extra = stage1_from_state_dict(
                read_checkpoint(path), fs_params, thresholds, legacy_bins, target=fs.get("target"), yaml_dir=yaml_dir
            )
            return section, tensors, extra, f"first_stage_config.params.ckpt_path ({path.name})"
    if vae_folder is not None:
        cfg = read_config(vae_folder)
        if not cfg.get("vae"):
            raise ConfigError(
                f"{vae_folder} holds no DQ-VAE", "pass --vae a folder made by `dq-edge import-official` of the stage-1 checkpoint"
            )
        tensors = {f"vae.{k}": v for k, v in read_tensors(vae_folder, "vae").items()}
        extra = {}
        if (Path(vae_folder) / THRESHOLDS_NAME).is_file():
            extra[THRESHOLDS_NAME] = (Path(vae_folder) / THRESHOLDS_NAME).read_bytes()
        return cfg["vae"], tensors, extra, f"--vae {Path(vae_folder).name}"
    raise ConfigError(
        "the checkpoint has no first_stage_model.* tensors and the YAML's first_stage_config ckpt_path "
        f"({ckpt!r}) does not exist",
        "import the stage-1 checkpoint first and pass --vae FOLDER",
    )


def layout_from_yaml(params: dict, n_codes: int, coarse_hw, fine_hw) -> TokenLayout:
    """The token layout the YAML describes, checked id by id against dq-edge's conventions."""
    perm = _params(params.get("permuter_config"), "permuter_config", PERMUTER)
    if perm.get("fine_position_order", "row-first") != "row-first":
        raise ConfigError(
            f"fine_position_order {perm.get('fine_position_order')!r} is not supported", "dq-edge uses the released row-first order"
        )
    if (int(perm.get("coarse_hw", -1)),) * 2 != tuple(coarse_hw) or (int(perm.get("fine_hw", -1)),) * 2 != tuple(fine_hw):
        raise ConfigError(
            f"the YAML's permuter grids {perm.get('coarse_hw')}/{perm.get('fine_hw')} do not match the first stage's "
            f"{tuple(coarse_hw)}/{tuple(fine_hw)}",
            "pass the first stage this transformer was trained on",
        )
    if "class_cond_stage_config" in params:
        cond = _params(params["class_cond_stage_config"], "class_cond_stage_config", CLASS_PROVIDER)
        layout = TokenLayout(n_codes, tuple(coarse_hw), tuple(fine_hw), n_classes=int(cond.get("n_classes", 0)))
        starts = {
            "threshold_content": layout.content_start(0),
            "threshold_coarse_position": layout.position_start(SEGMENT_COARSE, 0),
            "threshold_fine_position": layout.position_start(SEGMENT_FINE, 0),
        }
        if layout.n_classes < 1:
            raise ConfigError("class_cond_stage_config has no n_classes", HINT)
    else:
        cond = _params(params.get("uncond_stage_config"), "uncond_stage_config", UNCOND_PROVIDER)
        layout = TokenLayout(n_codes, tuple(coarse_hw), tuple(fine_hw))
        starts = {"coarse_sos": layout.content_start(), "fine_sos": layout.content_start(),
                  "coarse_pos_sos": layout.position_start(SEGMENT_COARSE), "fine_pos_sos": layout.position_start(SEGMENT_FINE)}
    for key, ours in starts.items():
        _expect(key, cond.get(key), ours)
    for key, ours in {
        "content_pad_code": layout.content_pad,
        "content_eos_code": layout.content_eos,
        "coarse_position_pad_code": layout.position_pad(SEGMENT_COARSE),
        "coarse_position_eos_code": layout.position_eos(SEGMENT_COARSE),
        "fine_position_pad_code": layout.position_pad(SEGMENT_FINE),
        "fine_position_eos_code": layout.position_eos(SEGMENT_FINE),
    }.items():
        _expect(f"permuter {key}", perm.get(key), ours)
    if params.get("activate_sos_for_fine_sequence", True) is not True:
        raise ConfigError("activate_sos_for_fine_sequence: False is not supported", "dq-edge sequences start both streams")
    return layout


def transformer_config_from_yaml(params: dict, layout: TokenLayout) -> TransformerConfig:
    tp = _params(params.get("transformer_config"), "transformer_config", STACKGPT)
    _expect("transformer vocab_size", tp.get("vocab_size"), layout.content_vocab)
    _expect("transformer coarse_position_size", tp.get("coarse_position_size"), layout.position_vocab(SEGMENT_COARSE))
    _expect("transformer fine_position_size", tp.get("fine_position_size"), layout.position_vocab(SEGMENT_FINE))
    _expect("transformer segment_size", tp.get("segment_size"), 2)
    return TransformerConfig(
        layout=layout,
        width=int(tp.get("n_embd", 256)),
        heads=int(tp.get("n_head", 8)),
        position_layers=int(tp.get("position_layer", 12)),
        content_layers=int(tp.get("content_layer", 12)),
        block_size=int(tp["block_size"]),
        dropout=float(tp.get("resid_pdrop", 0.0)),
    )


def _check_shapes(config: TransformerConfig, tensors: dict[str, torch.Tensor]) -> None:
    """Vocab sizes in the checkpoint must be those of the YAML (clear error, not a shape dump)."""
    for key, want in {
        "content_emb.weight": config.content_vocab,
        "content_coarse_pos_emb.weight": config.coarse_position_vocab,
        "content_fine_pos_emb.weight": config.fine_position_vocab,
        "position_head.1.weight": config.position_vocab,
        "content_head.1.weight": config.content_vocab,
    }.items():
        if key in tensors and tensors[key].shape[0] != want:
            raise CheckpointError(
                f"checkpoint tensor transformer.{key} has {tensors[key].shape[0]} rows but the YAML's vocab gives {want}",
                "the checkpoint and YAML do not belong together; " + HINT,
            )


def import_stage2(
    state_dict: dict[str, torch.Tensor],
    yaml_cfg: dict,
    yaml_dir: Path,
    vae_folder: Path | None,
    thresholds,
    legacy_bins: bool | None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, bytes]]:
    """-> (config sections {vae, transformer, tokens, source}, prefixed tensors, extra files)."""
    model = yaml_cfg["model"]
    target = str(model.get("target", ""))
    if not target.endswith((UNCOND_MODEL, CLASS_MODEL)):
        raise ConfigError(f"unsupported stage-2 target {target!r}", f"dq-edge imports {UNCOND_MODEL} and {CLASS_MODEL}")
    params = model.get("params") or {}
    vae_section, vae_tensors, extra, vae_source = _first_stage(
        state_dict, params, Path(yaml_dir), vae_folder, thresholds, legacy_bins
    )
    layout = layout_from_yaml(params, int(vae_section["n_codes"]), vae_section["coarse_hw"], vae_section["fine_hw"])
    config = transformer_config_from_yaml(params, layout)
    head = "transformer."
    tensors = {
        k[len(head):]: v.float() for k, v in state_dict.items() if k.startswith(head) and not k.endswith(".attn.mask")
    }
    dropped = sum(1 for k in state_dict if k.startswith(head) and k.endswith(".attn.mask"))
    _check_shapes(config, tensors)
    tr = transformer_from_state(config.to_dict(), tensors, where="official stage-2 checkpoint")
    section = tr.config.to_dict()
    section["notes"] = {"imported_from": target, "dropped_attn_mask_buffers": dropped}
    sections = {
        "vae": vae_section,
        "transformer": section,
        "tokens": layout.to_dict(),
        "source": {
            "first_stage": vae_source,
            "notices": [f"first stage from {vae_source}", f"dropped {dropped} attn.mask buffers"],
        },
    }
    prefixed = {**vae_tensors, **{f"transformer.{k}": v for k, v in tr.state_dict().items()}}
    return sections, prefixed, extra
