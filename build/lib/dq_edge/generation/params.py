"""Sampling options as one object (`SamplingParams`), validated once.

Library messages name the option, not a command-line flag: the CLI maps its flags onto these
fields (dq_edge/cli/sampling_options.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dq_edge.errors import InputError

SAMPLERS = ("dq-edge", "official")  # dq-edge: correct masks (default); official: the paper code's rules


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_k: int | None = None  # content
    top_p: float | None = None
    top_k_pos: int | None = None  # positions
    top_p_pos: float | None = None
    greedy: bool = False
    seed: int = 0
    cfg_scale: float | None = None  # classifier-free guidance; None = off
    fixed_fine_positions: bool = False  # fine positions = every cell of the fine regions, raster order
    sampler: str = "dq-edge"  # "official": reproduce the official sample_from_scratch token for token

    def validate(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"temperature must be a finite number > 0, got {self.temperature}", "use e.g. 1.0 (greedy for argmax)")
        for name in ("top_k", "top_k_pos"):
            k = getattr(self, name)
            if k is not None and (int(k) != k or k < 1):
                raise InputError(f"{name.replace('_', '-')} must be an integer >= 1, got {k}", "omit it to keep all ids")
        for name in ("top_p", "top_p_pos"):
            p = getattr(self, name)
            if p is not None and not (0.0 < p <= 1.0):
                raise InputError(f"{name.replace('_', '-')} must be in (0, 1], got {p}", "omit it or use e.g. 0.9")
        if self.cfg_scale is not None and not (math.isfinite(self.cfg_scale) and self.cfg_scale > 0):
            raise InputError(f"cfg-scale must be a finite number > 0, got {self.cfg_scale}", "use e.g. 1.5, or no guidance")
        if int(self.seed) != self.seed or self.seed < 0:
            raise InputError(f"seed must be an integer >= 0, got {self.seed}")
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {self.sampler!r}", f"choose one of {', '.join(SAMPLERS)}")
        if self.sampler == "official" and (self.cfg_scale is not None or self.fixed_fine_positions):
            raise InputError(
                "the official sampler has no classifier-free guidance and no fixed fine positions",
                "drop those options, or use the dq-edge sampler",
            )

    def to_dict(self) -> dict:
        return asdict(self)
