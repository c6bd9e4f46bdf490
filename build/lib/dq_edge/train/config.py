"""Training configuration: one typed pydantic model per run, from a YAML/JSON file plus command-line overrides.

Precedence: defaults < config file < flags. Unknown keys are errors (a typo must not silently
train with a default). `vae` / `transformer` hold overrides of the model preset's fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dq_edge.errors import ConfigError

# keys that may differ between a checkpoint and the run resuming it (they do not change the math
# of the steps already taken); everything else must match exactly
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "log_every", "keep_checkpoints", "out", "progress", "threads"}


_UNIT = dict(ge=0.0, lt=1.0)  # shares and decays in [0, 1)


class TrainConfig(BaseModel):
    """Every value typed and range-checked: YAML's `lr: 2e-4` (a string to PyYAML) becomes a float,
    `steps: ten` or `batch: -1` is a ConfigError naming the key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    stage: Literal["vae", "transformer"] = "vae"
    preset: str = "tiny"
    data: str = "emoji64"
    split: str = "train"
    out: str = "runs/out"
    steps: int = Field(1000, ge=1, le=10**9)
    batch: int = Field(16, ge=1, le=65536)
    seed: int = Field(0, ge=0, lt=2**63)
    # optimisation
    lr: float = Field(2e-4, gt=0.0, le=10.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.0, ge=0.0)  # stage 2 uses it (matrices only)
    beta1: float = Field(0.5, **_UNIT)
    beta2: float = Field(0.9, **_UNIT)
    grad_clip: float = Field(1.0, ge=0.0)  # max global grad norm; 0 = off
    ema_decay: float = Field(0.0, **_UNIT)  # weight EMA; 0 = off; the final model uses the EMA weights when on
    # bookkeeping
    checkpoint_every: int = Field(200, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    progress: bool = True
    threads: int = Field(0, ge=0, le=4096)  # torch CPU threads; 0 = torch's default. 1 is far faster for tiny models on a busy machine
    # stage 1 (DQ-VAE)
    router_mode: Literal["dynamic", "fixed-fine", "fixed-coarse"] = "dynamic"
    l1_weight: float = Field(1.0, ge=0.0)
    codebook_weight: float = Field(1.0, ge=0.0)
    gan_weight: float = Field(0.1, ge=0.0)  # discriminator factor (times the adaptive weight)
    gan_start: int = Field(1000, ge=0)  # step at which generator and discriminator GAN terms switch on
    disc_layers: int = Field(2, ge=1, le=8)
    disc_width: int = Field(64, ge=1, le=4096)
    perceptual_weights: str | None = None  # TorchScript file f(x, y) -> distance; None = no perceptual loss
    perceptual_weight: float = Field(1.0, ge=0.0)
    # stage 2 (DQ-Transformer)
    vae_model: str | None = None
    conditional: bool = True  # class-conditional when the dataset has labels
    class_dropout: float = Field(0.1, **_UNIT)  # share of samples trained with the null class (classifier-free guidance)
    # model preset overrides
    vae: dict[str, Any] = Field(default_factory=dict)
    transformer: dict[str, Any] = Field(default_factory=dict)

    def validate_combination(self) -> "TrainConfig":
        """Rules between keys (each key's own type and range are checked on construction)."""

        def bad(msg: str, hint: str = "fix the config file or the flag") -> ConfigError:
            return ConfigError(f"invalid training config: {msg}", hint)

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
        return self.model_dump()


def _config_error(exc: ValidationError, source: str) -> ConfigError:
    """pydantic's report -> one line naming the key path (`vae.n_codes`, `lr`) and the value."""
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ConfigError(
        f"invalid training config{source}: {key}: {first['msg']} (value: {first.get('input')!r}){more}",
        f"fix `{key}` in the config file or its flag",
    )


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
    known = set(TrainConfig.model_fields)
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
    except ValidationError as exc:
        raise _config_error(exc, f" ({file})" if file is not None else "") from exc
    return cfg.validate_combination()


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose values differ, except those a resume may change."""
    keys = (set(saved) | set(current)) - RESUMABLE_CHANGES
    return sorted(k for k in keys if saved.get(k) != current.get(k))
