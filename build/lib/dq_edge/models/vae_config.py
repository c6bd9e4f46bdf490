"""Every hyperparameter of the DQ-VAE in one dataclass, plus the named presets.

The config is stored verbatim as the `vae` section of a model folder's config.json, so a
folder rebuilds its model with no architecture flags. Grids follow from the encoder depth:
the fine branch leaves one level before the last, the coarse branch at the last level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from dq_edge.errors import ConfigError

ROUTER_KINDS = ("feature", "entropy")
ENTROPY_BIN_SETS = ("current", "legacy")
POSITION_TYPES = ("fourier+learned", "fourier", "learned")


@dataclass(frozen=True)
class VAEConfig:
    image_size: int = 16
    in_channels: int = 3
    out_channels: int = 3
    norm_groups: int = 32  # GroupNorm groups everywhere (the official code uses 32)
    # encoder (shared trunk + coarse and fine heads)
    ch: int = 32
    ch_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (4,)
    z_channels: int = 32  # channels of h_coarse / h_fine (before quant_conv)
    resamp_with_conv: bool = True
    dropout: float = 0.0
    # grains: 2 today; a triple-grain encoder would add a third level and a 3-way router
    grains: int = 2
    # router
    router: str = "feature"  # "feature" | "entropy"
    router_norm: str = "group-32"  # "none" | "group-N" (feature router input norm)
    router_gate: str = "2layer-fc-SiLu"  # "2layer-fc-SiLu" | "1layer-fc"
    update_router: bool = True  # train the feature router (hard Gumbel straight-through)
    target_fine_ratio: float = 0.5
    budget_gamma: float = 10.0
    # the official budget loss (calculate_all) adds the mirrored term twice: 2 * gamma * (r - t)^2
    budget_symmetric: bool = True
    entropy_bins: str = "current"  # "current" linspace(-1,1,32) | "legacy" linspace(0,1,32)
    entropy_sigma: float = 0.01
    # quantizer
    n_codes: int = 64
    embed_dim: int = 32
    commitment_beta: float = 0.25
    ema_decay: float = 0.99
    ema_eps: float = 1e-5
    restart_unused_codes: bool = True
    # decoder
    dec_ch: int = 32
    dec_ch_mult: tuple[int, ...] = (1, 2)
    dec_num_res_blocks: int = 1
    dec_attn_resolutions: tuple[int, ...] = (8,)
    position_type: str = "fourier+learned"
    notes: dict[str, Any] = field(default_factory=dict, compare=False)

    # ----- derived sizes -----
    @property
    def coarse_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def coarse_hw(self) -> tuple[int, int]:
        n = self.image_size // self.coarse_factor
        return (n, n)

    @property
    def fine_hw(self) -> tuple[int, int]:
        n = 2 * self.coarse_hw[0]
        return (n, n)

    @property
    def entropy_patch_size(self) -> int:
        """The entropy router scores one coarse region (coarse_factor pixels square)."""
        return self.coarse_factor

    @property
    def coarse_channels(self) -> int:
        return self.ch * self.ch_mult[-1]

    @property
    def fine_channels(self) -> int:
        # the official encoder divides the last width by the last ratio of ch_mult
        return self.coarse_channels // (self.ch_mult[-1] // self.ch_mult[-2])

    @property
    def threshold_key(self) -> str:
        """Key of the entropy thresholds JSON for the target ratio (percentile of entropies
        below the threshold); computed with the official float expression so 0.5 -> "50"."""
        return str(int(100 - self.target_fine_ratio * 100))

    # ----- checks and (de)serialisation -----
    def validate(self) -> "VAEConfig":
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"invalid VAE config: {msg}", "fix the preset or the config.json `vae` section")

        if self.grains != 2:
            raise bad(f"grains={self.grains}; only dual grain (2) is implemented")
        if self.router not in ROUTER_KINDS:
            raise bad(f"router {self.router!r} is not one of {ROUTER_KINDS}")
        if self.entropy_bins not in ENTROPY_BIN_SETS:
            raise bad(f"entropy_bins {self.entropy_bins!r} is not one of {ENTROPY_BIN_SETS}")
        if self.position_type not in POSITION_TYPES:
            raise bad(f"position_type {self.position_type!r} is not one of {POSITION_TYPES}")
        if len(self.ch_mult) < 2:
            raise bad("ch_mult needs at least two levels (fine and coarse)")
        if self.ch_mult[-1] % self.ch_mult[-2]:
            raise bad("ch_mult[-1] must be a multiple of ch_mult[-2]")
        if self.image_size % self.coarse_factor:
            raise bad(f"image_size {self.image_size} is not divisible by {self.coarse_factor}")
        dec_latent = self.image_size // 2 ** (len(self.dec_ch_mult) - 1)
        if dec_latent != self.fine_hw[0]:
            raise bad(f"decoder latent {dec_latent} != fine grid {self.fine_hw[0]}; adjust dec_ch_mult")
        if not 0.0 <= self.target_fine_ratio <= 1.0:
            raise bad("target_fine_ratio must be in [0, 1]")
        widths = [self.ch * m for m in self.ch_mult] + [self.dec_ch * m for m in self.dec_ch_mult]
        widths += [self.z_channels] if self.router == "feature" and self.router_norm != "none" else []
        if any(w % self.norm_groups for w in widths):
            raise bad(f"every width must be divisible by norm_groups={self.norm_groups}")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        d["coarse_hw"] = list(self.coarse_hw)  # informative; recomputed on load
        d["fine_hw"] = list(self.fine_hw)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VAEConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known) - {"coarse_hw", "fine_hw"})
        if unknown:
            raise ConfigError(
                f"unknown VAE config keys: {', '.join(unknown)}",
                "the folder was written by a newer dq-edge; upgrade dq-edge",
            )
        kwargs = {}
        for k, v in d.items():
            if k in known:
                kwargs[k] = tuple(v) if isinstance(v, list) else v
        return cls(**kwargs).validate()

    def with_(self, **changes: Any) -> "VAEConfig":
        return replace(self, **changes).validate()


def _official_dual(router: str, **extra: Any) -> VAEConfig:
    """The released ImageNet 256 dual-grain dims (configs/stage1 of the official code)."""
    base = dict(
        image_size=256, ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16, 32),
        z_channels=256, n_codes=1024, embed_dim=256, dec_ch=128, dec_ch_mult=(1, 1, 2, 2),
        dec_num_res_blocks=2, dec_attn_resolutions=(32,), router=router,
    )
    if router == "entropy":
        base.update(update_router=False, entropy_bins="legacy", budget_gamma=0.0)
    base.update(extra)
    return VAEConfig(**base).validate()


PRESETS: dict[str, VAEConfig] = {
    # tests: 16 px, coarse 4x4, fine 8x8, 64 codes
    "tiny": VAEConfig().validate(),
    "tiny-entropy": VAEConfig(router="entropy", update_router=False, budget_gamma=0.0).validate(),
    # emoji-64: 64 px, coarse 8x8 (F=8), fine 16x16 (F=4)
    "emoji64": VAEConfig(
        image_size=64, ch=64, ch_mult=(1, 1, 2, 2), num_res_blocks=1, attn_resolutions=(8,),
        z_channels=64, n_codes=512, embed_dim=64, dec_ch=64, dec_ch_mult=(1, 2, 2),
        dec_num_res_blocks=1, dec_attn_resolutions=(16,),
    ).validate(),
    # Fashion-MNIST padded to 32 px: coarse 4x4 (F=8), fine 8x8 (F=4)
    "fmnist32": VAEConfig(
        image_size=32, ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(4,),
        z_channels=32, n_codes=256, embed_dim=32, dec_ch=32, dec_ch_mult=(1, 2, 2),
        dec_num_res_blocks=1, dec_attn_resolutions=(8,),
    ).validate(),
    "imagenet256-dual": _official_dual("feature"),
    "imagenet256-dual-entropy": _official_dual("entropy"),
    "ffhq256-dual": _official_dual("feature"),
}


def get_preset(name: str) -> VAEConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown VAE preset {name!r}", f"use one of: {', '.join(PRESETS)}") from None
