"""The one validator of what a generation asks for: classes, batch size, guidance, sampler.

Every front end (the generator itself, `dq_edge.runtime.pipeline`, the CLI, the torch
reference) calls `check_classes` / `plan_batch`; messages name options, never CLI flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dq_edge.errors import InputError
from dq_edge.generation.guidance import guided_rows
from dq_edge.generation.params import SamplingParams
from dq_edge.tokens import TokenLayout


def check_classes(layout: TokenLayout, classes, count: int | None = None, allow_null: bool = False) -> np.ndarray | None:
    """Validated class ids int64 [n] (None for unconditional models). `count`: how many are
    needed (None: any number >= 1). The null class is a valid id only with `allow_null`."""
    if layout.n_classes == 0:
        if classes is not None and len(np.atleast_1d(classes)):
            raise InputError("this model is unconditional; it takes no class", "omit the class")
        return None
    if classes is None or not len(np.atleast_1d(classes)):
        raise InputError(f"this model is class-conditional ({layout.n_classes} classes)", "pass a class per sample")
    try:
        cls = np.asarray(classes, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"class ids must be integers, got {classes!r}") from exc
    if count is not None and len(cls) != count:
        raise InputError(f"{len(cls)} classes for {count} samples", "pass one class per sample")
    top = layout.n_start_tokens if allow_null else layout.n_classes
    bad = cls[(cls < 0) | (cls >= top)]
    if len(bad):
        raise InputError(
            f"class id {int(bad[0])} is out of range for this model (0..{top - 1})",
            f"pass a class between 0 and {top - 1}",
        )
    return cls


@dataclass(frozen=True)
class BatchPlan:
    batch: int  # samples
    rows: int  # backend rows (guidance doubles them)
    classes: np.ndarray | None  # int64 [batch]
    guided: bool


def plan_batch(layout: TokenLayout, batch: int, classes, params: SamplingParams, max_rows: int | None) -> BatchPlan:
    """Validate a batch of `batch` samples against the model and a backend of `max_rows` rows."""
    params.validate()
    if int(batch) != batch or batch < 1:
        raise InputError(f"batch must be an integer >= 1, got {batch}")
    cls = check_classes(layout, classes, batch)
    guided = params.cfg_scale is not None
    if guided and layout.null_class_id is None:
        raise InputError(
            "classifier-free guidance needs a class-conditional model trained with a null class",
            "generate without guidance (or train with class dropout)",
        )
    rows = guided_rows(batch, guided)
    if max_rows is not None and rows > max_rows:
        raise InputError(
            f"batch {batch} needs {rows} backend rows, above the maximum of {max_rows} this backend holds"
            + (" (classifier-free guidance doubles the rows)" if guided else ""),
            f"lower the batch to {max(1, max_rows // (rows // batch))}, or re-export with a larger maximum batch",
        )
    return BatchPlan(batch, rows, cls, guided)
