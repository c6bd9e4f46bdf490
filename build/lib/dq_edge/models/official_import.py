"""Official checkpoint (.ckpt + YAML) -> dq-edge model folder; stage 1 here, stage 2 via
`dq_edge.models.official_stage2.import_stage2` (detected by `transformer.*` keys).

Nothing is written under `out` unless the whole import succeeds (the folder is built in a
temp sibling and renamed).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from dq_edge.errors import ConfigError, UsageError
from dq_edge.models.official_stage1 import read_checkpoint, read_yaml, stage1_from_state_dict, stage1_kind


@dataclass
class ImportResult:
    out: Path
    kind: str  # e.g. "stage-1 entropy DQ-VAE"
    notices: list[str] = field(default_factory=list)


def _stage1_notices(section: dict) -> list[str]:
    notes = section.get("notes") or {}
    out = []
    if notes.get("dropped_training_keys"):
        out.append(f"dropped {notes['dropped_training_keys']} training-only loss.* tensors (LPIPS, discriminator)")
    if "entropy_bins" in notes:
        out.append(f"entropy bins: {notes['entropy_bins']}")
    if "threshold_key" in notes:
        out.append(f"entropy threshold: key {notes['threshold_key']!r} of {notes.get('thresholds_source')}")
    return out


def _stage2_importer():
    try:
        module = importlib.import_module("dq_edge.models.official_stage2")
    except ModuleNotFoundError as exc:
        if exc.name != "dq_edge.models.official_stage2":
            raise
        raise ConfigError(
            "this is a stage-2 (DQ-Transformer) checkpoint and this dq-edge build has no stage-2 importer",
            "import the stage-1 DQ-VAE checkpoint instead, or upgrade dq-edge",
        ) from None
    return module.import_stage2


def import_official_checkpoint(
    ckpt: Path,
    config: Path,
    out: Path,
    thresholds: Path | None = None,
    legacy_bins: bool | None = None,
    vae_folder: Path | None = None,
    force: bool = False,
) -> ImportResult:
    from dq_edge.models.folder import write_model_folder

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UsageError(f"{out} already exists and is not empty", "pass --overwrite to replace it or choose another --out")
    yaml_cfg = read_yaml(Path(config))
    yaml_dir = Path(config).resolve().parent
    sd = read_checkpoint(Path(ckpt))
    model = yaml_cfg["model"]
    source = {"kind": "official", "ckpt": Path(ckpt).name, "yaml": Path(config).name, "target": model["target"]}
    if any(k.startswith("transformer.") for k in sd):
        sections, tensors, extra = _stage2_importer()(sd, yaml_cfg, yaml_dir, vae_folder, thresholds, legacy_bins)
        sections = {**sections, "source": {**source, **(sections.get("source") or {})}}
        notices = [str(n) for n in (sections.get("source") or {}).get("notices", [])]
        write_model_folder(out, sections, tensors, extra, overwrite=force)
        return ImportResult(out, "stage-2 DQ-Transformer", notices)
    if vae_folder is not None:
        raise UsageError("--vae applies to stage-2 checkpoints only", "drop --vae for a stage-1 (DQ-VAE) checkpoint")
    kind = stage1_kind(str(model["target"]))
    if thresholds is not None and kind != "entropy":
        raise UsageError("--thresholds applies to entropy-router models only", "drop --thresholds for this feature-router model")
    params = model.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{config}: model.params is not a mapping", "pass the training YAML of this checkpoint")
    section, tensors, extra = stage1_from_state_dict(sd, params, thresholds, legacy_bins, target=str(model["target"]), yaml_dir=yaml_dir)
    from dq_edge.tokens import TokenLayout

    layout = TokenLayout(section["n_codes"], tuple(section["coarse_hw"]), tuple(section["fine_hw"]))
    write_model_folder(out, {"vae": section, "tokens": layout.to_dict(), "source": source}, tensors, extra, overwrite=force)
    return ImportResult(out, f"stage-1 {kind}-router DQ-VAE", _stage1_notices(section))
