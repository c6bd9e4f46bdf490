"""Entropy coding of one image's tokens with the transformer's own step probabilities.

Encoder and decoder run the same backend calls (`stepper.step_sequence`); at every coded
decision both quantize the same logits to the same integer frequencies
(`frequencies.quantize`) and constriction's range coder (a queue: first in, first out, which
matches the autoregressive order) writes or reads the symbol. The class of a class-conditional
model comes first, coded uniformly over the model's classes (log2 C bits).
"""

from __future__ import annotations

import constriction
import numpy as np

from dq_edge.codec.container import DqtFormatError
from dq_edge.codec.frequencies import PROB_BITS, categorical, ideal_bits, quantize
from dq_edge.codec.stepper import POSITION, Backend, step_sequence
from dq_edge.errors import DQEdgeError
from dq_edge.tokens import TokenLayout

_CORRUPT_HINT = "re-encode the image; if it persists, decode on the backend and precision that encoded it"


def _class_model(layout: TokenLayout):
    return constriction.stream.model.Uniform(layout.n_classes)


def encode_with_model(
    backend: Backend, layout: TokenLayout, cls: int | None, content: np.ndarray, position: np.ndarray
) -> tuple[bytes, float]:
    """(payload, ideal bits = -log2 P(tokens) under the quantized model, class included)."""
    coder = constriction.stream.queue.RangeEncoder()
    ideal = 0.0
    if layout.n_classes > 1:
        coder.encode(int(cls), _class_model(layout))
        ideal += float(np.log2(layout.n_classes))

    def decide(kind: str, index: int, logits: np.ndarray, allowed: np.ndarray) -> int:
        nonlocal ideal
        value = int((position if kind == POSITION else content)[index])
        ids, freqs = quantize(logits, allowed, PROB_BITS)
        k = int(np.searchsorted(ids, value))
        if k >= len(ids) or ids[k] != value:
            raise DQEdgeError(f"token {value} at {index} is outside the codec grammar", "report this as a bug")
        coder.encode(k, categorical(freqs))
        ideal += ideal_bits(freqs, k)
        return value

    stepped, stepped_pos, _ = step_sequence(backend, layout, cls, decide)
    if not (np.array_equal(stepped, content) and np.array_equal(stepped_pos, position)):
        raise DQEdgeError("the stepped token sequence differs from the image's", "report this as a bug")
    return coder.get_compressed().astype("<u4").tobytes(), ideal


def decode_with_model(
    backend: Backend, layout: TokenLayout, payload: bytes
) -> tuple[int | None, np.ndarray, np.ndarray, np.ndarray]:
    """payload -> (class, content, position, segment). A damaged payload still yields a legal
    sequence (every decision is among the legal ids and the stepping is bounded); the caller's
    token checksum tells it apart."""
    if len(payload) % 4:
        raise DqtFormatError("the .dqt payload is not a whole number of 32-bit words", "pass an undamaged .dqt file")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        cls: int | None = None
        if layout.n_classes > 1:
            cls = int(decoder.decode(_class_model(layout)))
        elif layout.n_classes == 1:
            cls = 0
    except (ValueError, RuntimeError, AssertionError) as exc:  # constriction's errors on invalid data
        raise DqtFormatError(f"the .dqt payload cannot be decoded: {exc}", _CORRUPT_HINT) from exc

    def decide(kind: str, index: int, logits: np.ndarray, allowed: np.ndarray) -> int:
        ids, freqs = quantize(logits, allowed, PROB_BITS)
        try:
            k = int(decoder.decode(categorical(freqs)))
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise DqtFormatError(f"the .dqt payload cannot be decoded: {exc}", _CORRUPT_HINT) from exc
        if not 0 <= k < len(ids):
            raise DqtFormatError("the .dqt payload decodes to an impossible symbol", _CORRUPT_HINT)
        return int(ids[k])

    content, position, segment = step_sequence(backend, layout, cls, decide)
    return cls, content, position, segment
