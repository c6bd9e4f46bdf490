"""The .dqt image codec: DQ-VAE tokens entropy-coded with the DQ-Transformer's own step
probabilities (or packed with fixed-length fields, the `--no-model` baseline). Torch-free;
a model folder imports torch lazily. Format and choices: docs/codec.md."""

from dq_edge.codec.api import Encoded, decode_file, decode_files, encode_image, encode_images, file_codes, read_header
from dq_edge.codec.container import DqtFormatError
from dq_edge.codec.model import CodecModel, open_model

__all__ = [
    "CodecModel", "DqtFormatError", "Encoded", "decode_file", "decode_files", "encode_image", "encode_images",
    "file_codes", "open_model", "read_header",
]
