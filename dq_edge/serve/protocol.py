"""The served model's interface, declared once: Triton config, the Python backend, the CLI's
example request, the docs and the tests all read it from here.

Model `dq_edge`, `max_batch_size` > 0, so every tensor carries a leading batch dim of its own:
a request for n images sends CLASS_ID and SEED as [n, 1]. Optional sampling inputs are [n, 1]
too (one value per image); an absent one means the runtime's default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MODEL_NAME = "dq_edge"


@dataclass(frozen=True)
class TensorDecl:
    name: str
    triton_type: str  # config.pbtxt spelling, e.g. TYPE_INT64
    numpy_type: str
    optional: bool = False
    doc: str = ""

    @property
    def datatype(self) -> str:
        """The KServe v2 (HTTP/gRPC) spelling: INT64, FP32, UINT8."""
        return self.triton_type.removeprefix("TYPE_")


INPUTS = (
    TensorDecl("CLASS_ID", "TYPE_INT64", "int64", doc="class id of the image (class-conditional models)"),
    TensorDecl("SEED", "TYPE_INT64", "int64", doc=">= 0; the same class + seed gives the same image"),
    TensorDecl("TEMPERATURE", "TYPE_FP32", "float32", True, "softmax temperature, > 0 (default 1)"),
    TensorDecl("TOP_K", "TYPE_INT64", "int64", True, "top-k for content tokens, >= 1 (default off)"),
    TensorDecl("TOP_P", "TYPE_FP32", "float32", True, "top-p for content tokens, in (0, 1] (default off)"),
    TensorDecl("CFG_SCALE", "TYPE_FP32", "float32", True, "classifier-free guidance scale, > 0 (default off)"),
)
# output dims without the batch dim; IMAGE's are filled in from the model's image size
OUTPUTS = (
    TensorDecl("IMAGE", "TYPE_UINT8", "uint8", doc="[H, W, 3] RGB"),
    TensorDecl("TOKENS", "TYPE_INT64", "int64", doc="[3, T]: content, position, segment ids, right-padded"),
    TensorDecl("LENGTH", "TYPE_INT64", "int64", doc="[1]: tokens of this image (TOKENS beyond it are padding)"),
)
OPTIONAL_INPUTS = tuple(t.name for t in INPUTS if t.optional)


def output_dims(image_size: int) -> dict[str, list[int]]:
    return {"IMAGE": [image_size, image_size, 3], "TOKENS": [3, -1], "LENGTH": [1]}


def example_body(class_id: int = 0, seed: int = 0) -> dict:
    """One image as a KServe v2 JSON request; asks for LENGTH and TOKENS only so that the reply
    fits on a terminal (leave out "outputs" to get IMAGE as well)."""
    return {
        "inputs": [
            {"name": "CLASS_ID", "datatype": "INT64", "shape": [1, 1], "data": [class_id]},
            {"name": "SEED", "datatype": "INT64", "shape": [1, 1], "data": [seed]},
        ],
        "outputs": [{"name": "LENGTH"}, {"name": "TOKENS"}],
    }


def infer_url(base: str) -> str:
    return f"{base}/v2/models/{MODEL_NAME}/infer"


def curl_line(base: str, class_id: int = 0, seed: int = 0) -> str:
    body = json.dumps(example_body(class_id, seed), separators=(",", ":"))
    return f"curl -s -X POST {infer_url(base)} -H 'Content-Type: application/json' -d '{body}'"
