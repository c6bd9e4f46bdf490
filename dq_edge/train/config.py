"""Training configuration: one dataclass per run, from a YAML/JSON file plus command-line overrides.

Precedence: defaults < config file < flags. Unknown keys are errors (a typo must not silently
train with a default). `vae` / `transformer` hold overrides of the model preset's fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dq_edge.errors import ConfigError

STAGES = ("vae", "transformer")
ROUTER_MODES = ("dynamic", "fixed-fine", "fixed-coarse")
# keys that may differ between a checkpoint and the run resuming it (they do not change the math
# of the steps already taken); everything else must match exactly
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "log_every", "keep_checkpoints", "out", "progress", "threads"}


@dataclass
class TrainConfig:
    stage: str = "vae"
    preset: str = "tiny"
    data: str = "emoji64"
    split: str = "train"
    out: str = "runs/out"
    steps: int = 1000
    batch: int = 16
    seed: int = 0
    # optimisation
    lr: float = 2e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.0  # stage 2 uses it (matrices only)
    beta1: float = 0.5
    beta2: float = 0.9
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    ema_decay: float = 0.0  # weight EMA; 0 = off; the final model uses the EMA weights when on
    # bookkeeping
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    log_every: int = 10
    progress: bool = True
    threads: int = 0  # torch CPU threads; 0 = torch's default. 1 is far faster for tiny models on a busy machine
    # stage 1 (DQ-VAE)
    router_mode: str = "dynamic"
    l1_weight: float = 1.0
    codebook_weight: float = 1.0
    gan_weight: float = 0.1  # discriminator factor (times the adaptive weight)
    gan_start: int = 1000  # step at which generator and discriminator GAN terms switch on
    disc_layers: int = 2
    disc_width: int = 64
    perceptual_weights: str | None = None  # TorchScript file f(x, y) -> distance; None = no perceptual loss
    perceptual_weight: float = 1.0
    # stage 2 (DQ-Transformer)
    vae_model: str | None = None
    conditional: bool = True  # class-conditional when the dataset has labels
    class_dropout: float = 0.1  # share of samples trained with the null class (classifier-free guidance)
    # model preset overrides
    vae: dict[str, Any] = field(default_factory=dict)
    transformer: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        def bad(msg: str, hint: str = "fix the config file or the flag") -> ConfigError:
            return ConfigError(f"invalid training config: {msg}", hint)

        if self.stage not in STAGES:
            raise bad(f"stage {self.stage!r} is not one of {STAGES}")
        if self.router_mode not in ROUTER_MODES:
            raise bad(f"router_mode {self.router_mode!r} is not one of {ROUTER_MODES}")
        for name in ("steps", "batch", "checkpoint_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup_steps < 0:
            raise bad("need lr > 0, 0 <= min_lr_ratio <= 1, warmup_steps >= 0")
        if not 0 <= self.ema_decay < 1:
            raise bad(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.class_dropout < 1:
            raise bad(f"class_dropout must be in [0, 1), got {self.class_dropout}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise bad("grad_clip and weight_decay must be >= 0")
        if self.stage == "transformer" and not self.vae_model:
            raise bad("stage 2 needs the trained VAE", "pass --vae-model DIR (a folder written by `dq-edge train vae`)")
        if self.stage == "vae" and self.router_mode != "dynamic" and any(k in self.vae for k in ("router", "target_fine_ratio")):
            raise bad(
                f"router_mode {self.router_mode} fixes the router; the config also sets vae.router/target_fine_ratio",
                "drop those keys or use --router-mode dynamic",
            )
        if self.perceptual_weights and not Path(self.perceptual_weights).is_file():
            raise bad(f"perceptual weights {self.perceptual_weights} not found", "pass an existing TorchScript file or drop the flag")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", "check the --config path")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - yaml and json raise different types; both mean "unreadable"
        raise ConfigError(f"config file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}", "fix its syntax") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values", "write `key: value` lines")
    return data


# stage 2 trains a transformer: GPT-style AdamW settings instead of the GAN-friendly stage-1 ones
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "vae": {},
    "transformer": {"lr": 3e-4, "beta1": 0.9, "beta2": 0.95, "weight_decay": 0.01, "preset": "tiny"},
}


def build_config(file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults < stage defaults < file < overrides (None values in overrides mean "not given")."""
    known = {f.name for f in fields(TrainConfig)}
    given: dict[str, Any] = read_config_file(file) if file is not None else {}
    given.update({k: v for k, v in overrides.items() if v is not None})
    values = dict(STAGE_DEFAULTS.get(given.get("stage", "vae"), {}))
    values.update(given)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown training config keys: {', '.join(unknown)}", f"valid keys: {', '.join(sorted(known))}")
    for key in ("vae", "transformer"):
        if not isinstance(values.get(key, {}), dict):
            raise ConfigError(f"`{key}` must be a mapping of preset overrides", f"write e.g. `{key}: {{n_codes: 256}}`")
    try:
        cfg = TrainConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"bad training config: {exc}", "check the value types") from exc
    return cfg.validate()


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose values differ, except those a resume may change."""
    keys = (set(saved) | set(current)) - RESUMABLE_CHANGES
    return sorted(k for k in keys if saved.get(k) != current.get(k))
