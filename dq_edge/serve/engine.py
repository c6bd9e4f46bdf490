"""The serving side's one use of the runtime: requests in, batched generation, images out.

Everything the Triton model (dq_edge/serve/python_backend.py) needs from dq_edge.runtime goes
through this module, so that it can be re-pointed at the step-wise Generator of the generation
core (and its continuous batcher) without touching the server.

How requests are batched: Triton's dynamic batcher hands one `execute` call a list of
requests; their rows are grouped by sampling parameters (rows with the same temperature / top-k /
top-p / guidance run together) and each group goes through the continuous batcher
(dq_edge.generation.ContinuousBatcher) with up to the export's max batch rows (half of it with
guidance): a row whose image is done takes the group's next image at once.

Seeds are per image: the image of (class c, seed s) is the same whether it ran alone or inside a
batch, because every image draws from its own random stream seeded with s, exactly as a batch of
one with seed s does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dq_edge.errors import InputError
from dq_edge.generation import SamplingParams
from dq_edge.serve.protocol import OPTIONAL_INPUTS

INT64_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True)
class ModelInfo:
    """What the Triton config needs to know about an export or engine folder."""

    image_size: int
    max_batch: int
    n_classes: int
    guidance: bool  # the model has a null class, so CFG_SCALE is accepted
    precision: str


@dataclass(frozen=True)
class ImageRow:
    class_id: int | None
    seed: int
    params: SamplingParams  # seed left at 0: rows with equal params share one generation


def describe(folder: str | Path, precision: str | None = None) -> ModelInfo:
    """Read an export or engine folder's manifest (no backend is opened)."""
    from dq_edge.export.manifest import load_export, read_manifest
    from dq_edge.runtime.session import folder_kind

    folder = Path(folder)
    if folder_kind(folder) == "engine":
        from dq_edge.engines.manifest import read_manifest as read_engine_manifest

        engine = read_engine_manifest(folder)
        if precision is not None and precision != engine.precision:
            raise InputError(f"{folder} holds {engine.precision} engines, not {precision}", "omit the precision")
        dims, layout, max_batch, precision = engine.dims, engine.layout, engine.max_batch, engine.precision
    else:
        if precision is None:
            have = list(read_manifest(folder).get("precisions", {}))
            precision = "fp32" if "fp32" in have or not have else have[0]
        info = load_export(folder, precision, verify=False)
        dims, layout, max_batch = info.dims, info.layout, info.max_batch
    if layout is None:
        raise InputError(f"{folder} holds no transformer; nothing to generate", "export a model that has both stages")
    return ModelInfo(dims.image_size, max_batch, layout.n_classes, layout.null_class_id is not None, precision)


def _column(inputs: Mapping[str, np.ndarray], name: str, rows: int) -> np.ndarray | None:
    """An [n, 1] input as a flat [n] array (None when absent)."""
    value = inputs.get(name)
    if value is None:
        return None
    value = np.asarray(value)
    if value.shape != (rows, 1):
        raise InputError(f"input {name} has shape {list(value.shape)}, expected [{rows}, 1]", "send every input as [n, 1]")
    return value.reshape(rows)  # [n, 1] -> [n]


class ServeEngine:
    """An opened runtime that turns Triton requests (dicts of numpy inputs) into outputs."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.backend = runtime.backend
        self.layout = runtime.layout
        self.image_size = self.backend.dims.image_size

    @classmethod
    def open(cls, folder: str | Path, backend: str = "auto", precision: str | None = None, threads: int | None = None):
        from dq_edge.runtime.session import open_runtime

        # full-length caches: an image's floats, hence its tokens, do not depend on which other
        # requests share its batch (bucketed caches may flip a near-tie draw; docs/runtime.md)
        return cls(open_runtime(folder, backend, precision, threads=threads, cache_buckets=False))

    # ------------------------------------------------------------------ requests
    def parse(self, inputs: Mapping[str, np.ndarray]) -> list[ImageRow]:
        """Validated image rows of one request (raises InputError with a one-line reason)."""
        from dq_edge.generation.requests import check_classes

        if "SEED" not in inputs:
            raise InputError("input SEED is missing", "send SEED as INT64 [n, 1]")
        seed_input = np.asarray(inputs["SEED"])
        rows = int(seed_input.shape[0]) if seed_input.ndim else 1  # the full shape is checked by _column
        seeds = _column(inputs, "SEED", rows)
        if (seeds < 0).any():
            raise InputError(f"SEED must be >= 0, got {int(seeds.min())}", "send seeds between 0 and 2**63 - 1")
        classes = _column(inputs, "CLASS_ID", rows)
        if self.layout.n_classes and classes is None:
            raise InputError(f"input CLASS_ID is missing (the model has {self.layout.n_classes} classes)", "send CLASS_ID as INT64 [n, 1]")
        checked = check_classes(self.layout, classes, rows)
        optional = {name: _column(inputs, name, rows) for name in OPTIONAL_INPUTS}
        out = []
        for i in range(rows):
            value = {name: (None if col is None else col[i].item()) for name, col in optional.items()}
            params = SamplingParams(
                temperature=1.0 if value["TEMPERATURE"] is None else float(value["TEMPERATURE"]),
                top_k=value["TOP_K"], top_p=value["TOP_P"], cfg_scale=value["CFG_SCALE"],
            )
            try:
                params.validate()
            except InputError as exc:
                raise InputError(exc.message, "see the model's input ranges in docs/serving.md") from exc
            if params.cfg_scale is not None and self.layout.null_class_id is None:
                raise InputError("CFG_SCALE needs a model trained with a null class; this one has none", "omit CFG_SCALE")
            out.append(ImageRow(None if checked is None else int(checked[i]), int(seeds[i]), params))
        return out

    def serve(self, requests: list[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray] | InputError]:
        """One result per request: its outputs, or the InputError that rejects it alone."""
        parsed: list[list[ImageRow] | InputError] = []
        for inputs in requests:
            try:
                parsed.append(self.parse(inputs))
            except InputError as exc:
                parsed.append(exc)
        good = [rows for rows in parsed if not isinstance(rows, InputError)]
        images = iter(self.generate([row for rows in good for row in rows]))
        results: list[dict[str, np.ndarray] | InputError] = []
        for rows in parsed:
            results.append(rows if isinstance(rows, InputError) else self._outputs([next(images) for _ in rows]))
        return results

    # ------------------------------------------------------------------ generation
    def generate(self, rows: list[ImageRow]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(image uint8 [H, W, 3], tokens int64 [3, T_i]) per row, in order."""
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(rows)
        groups: dict[SamplingParams, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(row.params, []).append(i)
        for params, members in groups.items():
            capacity = max(1, self.backend.max_batch // (2 if params.cfg_scale is not None else 1))
            for i, result in zip(members, self._generate_group([rows[i] for i in members], params, capacity)):
                out[i] = result
        return out  # type: ignore[return-value]

    def _generate_group(self, rows: list[ImageRow], params: SamplingParams, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
        from dq_edge.generation.batcher import ContinuousBatcher, ImageRequest
        from dq_edge.runtime.images import to_uint8
        from dq_edge.sequences import decode_batch

        requests = [ImageRequest(j, row.class_id, row.seed) for j, row in enumerate(rows)]
        tokens = ContinuousBatcher(self.backend, requests, batch, params, self.layout).run()  # image j at row j
        _, codes = decode_batch(self.layout, tokens)
        images = to_uint8(self.backend.decode(codes))  # [b, H, W, 3]
        return [(images[j], np.stack(tokens.sample(j))) for j in range(len(rows))]  # tokens [3, T_j]

    def _outputs(self, results: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
        """Stack one request's rows: IMAGE [n, H, W, 3], TOKENS [n, 3, T] (right-padded), LENGTH [n, 1]."""
        from dq_edge.tokens import SEGMENT_FINE

        lengths = np.array([[tokens.shape[1]] for _, tokens in results], dtype=np.int64)
        pad = np.array([self.layout.content_pad, self.layout.position_pad(SEGMENT_FINE), SEGMENT_FINE], dtype=np.int64)
        tokens = np.repeat(pad[None, :, None], int(lengths.max()), axis=2).repeat(len(results), axis=0)  # [n, 3, T]
        for j, (_, row_tokens) in enumerate(results):
            tokens[j, :, : row_tokens.shape[1]] = row_tokens
        return {"IMAGE": np.stack([image for image, _ in results]), "TOKENS": tokens, "LENGTH": lengths}
