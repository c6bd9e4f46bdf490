"""`Pipeline`: images in three lines, for people who do not want the CLI.

    from dq_edge import Pipeline
    pipe = Pipeline.from_folder("export/")                 # or an engine folder, or a model folder
    out = pipe(num=8, classes=[0, 1], seed=0)
    out.images[0].save("first.png")                         # PIL images; out.tokens, out.timings

Export and engine folders open on the torch-free runtime (dq_edge.runtime.session: ONNX Runtime
or TensorRT, `backend="auto"` picks the best available). A model folder (config.json +
model.safetensors) runs on the torch reference backend, which needs torch; without torch the
error says how to export it once. Every call drives the same generator as `dq-edge run`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dq_edge.errors import BackendUnavailableError, ConfigError, InputError
from dq_edge.generation import Generator, SamplingParams, open_generator
from dq_edge.generation.backend import Backend
from dq_edge.generation.guidance import guided_rows
from dq_edge.sequences import TokenBatch
from dq_edge.tokens import TokenLayout


@dataclass
class PipelineOutput:
    images: list  # PIL.Image.Image, one per sample (RGB)
    tokens: TokenBatch  # [N, T] right-padded
    grains: np.ndarray  # int64 [N, Hc, Wc], 1 = fine
    codes: np.ndarray  # int64 [N, Hf, Wf]
    timings: dict = field(default_factory=dict)  # wall seconds and per-stage seconds of this call


def _stage_seconds(backend: Backend) -> dict[str, float]:
    """Total seconds per stage so far, from either timing format a backend may report (a list
    of per-call seconds, or running statistics with a `total`)."""
    return {stage: float(v.total if hasattr(v, "total") else sum(v)) for stage, v in backend.stage_times().items()}


def _torch_importable() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


class Pipeline:
    """A backend opened once; call it for images."""

    def __init__(self, backend: Backend, layout: TokenLayout, description: str = ""):
        self.backend, self.layout, self.description = backend, layout, description

    @classmethod
    def from_folder(
        cls, path: str | Path, backend: str = "auto", precision: str | None = None, threads: int | None = None
    ) -> "Pipeline":
        """Open an export folder, an engine folder or a model folder (see the module doc)."""
        from dq_edge.runtime.default_model import is_model_folder

        path = Path(path)
        if is_model_folder(path):
            return cls._from_model_folder(path, backend, precision, threads)
        from dq_edge.runtime.session import open_runtime

        opened = open_runtime(path, backend, precision, threads=threads)
        return cls(opened.backend, opened.layout, f"{opened.backend.name} ({opened.precision}): {opened.reason}")

    @classmethod
    def _from_model_folder(cls, path: Path, backend: str, precision: str | None, threads: int | None) -> "Pipeline":
        if backend not in ("auto", "torch") or precision not in (None, "fp32"):
            raise InputError(
                f"{path} is a model folder: it runs on the torch reference backend at fp32",
                f"export it for other backends or precisions: dq-edge export {path} --out EXPORT_DIR",
            )
        if not _torch_importable():
            raise BackendUnavailableError(
                f"{path} is a model folder, which runs on the torch reference backend; torch is not installed",
                f"pip install 'dq-edge[torch]', or export it once on a machine with torch "
                f"(dq-edge export {path} --out EXPORT_DIR) and open EXPORT_DIR",
            )
        import torch

        from dq_edge.models.torch_backend import TorchBackend
        from dq_edge.models.transformer import load_transformer
        from dq_edge.models.vae import load_vae

        if threads:
            torch.set_num_threads(threads)
        tr, vae = load_transformer(path), load_vae(path)
        if (vae.config.n_codes, tuple(vae.config.coarse_hw), tuple(vae.config.fine_hw)) != (
            tr.layout.n_codes, tuple(tr.layout.coarse_hw), tuple(tr.layout.fine_hw)
        ):
            raise ConfigError(f"{path}: the transformer's token layout does not match its VAE", "retrain or re-import the transformer")
        return cls(TorchBackend(tr, vae, max_batch=16), tr.layout, "torch reference (fp32)")

    def generator(self, batch: int, classes=None, **sampling) -> Generator:
        """A step-wise generator over this pipeline's backend (`sampling`: SamplingParams fields); sample i
        draws from seed + i, as image i of `__call__` does."""
        return open_generator(self.backend, batch, classes, SamplingParams(**sampling), self.layout, per_image_seeds=True)

    def __call__(self, num: int = 1, classes=None, seed: int = 0, batch: int | None = None, **sampling) -> PipelineOutput:
        """`num` images; `classes`: one id, or a list cycled over the images (class models; None
        cycles all classes); `sampling`: any other SamplingParams field (temperature, top_k,
        top_p, top_k_pos, top_p_pos, greedy, cfg_scale, fixed_fine_positions, sampler).
        `batch`: images per backend run (default: as many as the backend holds; one with the
        official sampler, which pads a batch's coarse streams to the longest). Image i draws from
        seed + i (continuous batching: a finished image's row takes the next image at once)."""
        from PIL import Image

        from dq_edge.runtime.images import to_uint8
        from dq_edge.runtime.pipeline import RunRequest, generate_images, resolve_classes

        params = SamplingParams(seed=seed, **sampling)
        params.validate()
        per_image = resolve_classes(self.layout, num, [classes] if isinstance(classes, (int, np.integer)) else classes)
        if batch is None:  # the official sampler pads a batch's coarse streams: one image at a time
            rows_per_image = guided_rows(1, params.cfg_scale is not None)
            batch = 1 if params.sampler == "official" else max(1, min(num, self.backend.max_batch // rows_per_image))
        before = _stage_seconds(self.backend)
        result = generate_images(self.backend, self.layout, RunRequest(num, batch, per_image, params))
        stages = {stage: round(total - before.get(stage, 0.0), 6) for stage, total in _stage_seconds(self.backend).items()}
        pictures = [Image.fromarray(p) for p in to_uint8(result.images)]
        return PipelineOutput(
            pictures, result.tokens, result.grains, result.codes, {"wall_s": round(result.wall_seconds, 6), "stages_s": stages}
        )
