"""The generation algorithm, torch-free (numpy only): token grammar, sampling, guidance, the
backend protocol and the step-wise generator. `dq_edge.runtime` (ONNX Runtime, TensorRT) and
`dq_edge.models` (the torch reference) both drive it; it imports neither (import-linter
contracts in pyproject.toml).

| module | what |
|---|---|
| `backend` | the `Backend` protocol a device implements |
| `params` | `SamplingParams`: every sampling option as one object |
| `requests` | the one validator of classes, batch and guidance |
| `grammar` | dq-edge's legal next positions (`PositionMasks`) |
| `sampling` | temperature / top-k / top-p / greedy draws on preallocated buffers |
| `guidance` | classifier-free guidance rows and the logit mix |
| `generator` | `Generator`: append_prefix, step, is_done, sequences, preview, cancel |
| `official` | `OfficialGenerator`: the official sampler's rules, token for token |
| `code_maps` | code maps of unfinished or official sequences (previews, decoding) |
| `loop` | `generate_tokens`, a loop over a generator; `open_generator` picks the sampler |
| `batcher` | `ContinuousBatcher`: a queue of image requests keeping every row busy; static batches |
"""

from dq_edge.generation.backend import Backend
from dq_edge.generation.batcher import ContinuousBatcher, ImageRequest, image_requests
from dq_edge.generation.code_maps import final_code_maps, known_code_maps
from dq_edge.generation.generator import Generator
from dq_edge.generation.loop import generate_tokens, open_generator
from dq_edge.generation.official import OfficialGenerator
from dq_edge.generation.params import SAMPLERS, SamplingParams
from dq_edge.generation.requests import check_classes, plan_batch
from dq_edge.sequences import TokenBatch

__all__ = [
    "Backend", "ContinuousBatcher", "Generator", "ImageRequest", "image_requests", "OfficialGenerator", "SAMPLERS", "SamplingParams", "TokenBatch",
    "check_classes", "final_code_maps", "generate_tokens", "known_code_maps", "open_generator", "plan_batch",
]
