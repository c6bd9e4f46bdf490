"""The `.dqt` file: header, payload, checksum (byte layout in docs/codec.md). Torch-free.

Parsing treats the bytes as hostile: the size is checked before anything else, the CRC-32
trailer before any field is trusted, and every length or count field against bounds that come
from the model that will decode the file (`Limits`) before anything is allocated from it.
Every failure is a `DqtFormatError` (an InputError) or, for a file from another model, an
ArtifactMismatchError; never a raw exception.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from dq_edge.errors import ArtifactMismatchError, InputError
from dq_edge.tokens import TokenLayout

MAGIC = b"DQT\x1a"
VERSION = 1
CODER_MODEL, CODER_FIXED = 0, 1  # range coder with the transformer's probabilities | fixed-length packing
CODER_NAMES = {CODER_MODEL: "model", CODER_FIXED: "fixed"}
MAX_NAME = 16  # backend / precision names
HEADER_HINT = "pass a .dqt file written by `dq-edge encode`"

FINGERPRINT_BYTES = 8  # the first 8 bytes of the model's sha256: enough to tell models apart
# after the two names: fingerprint, H, W, n_codes, coarse hw, fine hw, n_classes, prob/logit bits,
# token count, token crc, payload bytes
_FIXED_FIELDS = struct.Struct(f"<{FINGERPRINT_BYTES}sHHIHHHHHBBHII")
_TRAILER = struct.Struct("<I")


class DqtFormatError(InputError):
    """A file that is not a well-formed .dqt file (truncated, damaged, extended, foreign)."""


@dataclass(frozen=True)
class Limits:
    """What the decoding model allows: every field of a file is checked against these."""

    fingerprint: str  # sha256 hex of the model weights
    image_size: int
    layout: TokenLayout
    max_payload: int  # bytes

    @property
    def max_file_size(self) -> int:
        return len(MAGIC) + 3 + 2 * (1 + MAX_NAME) + _FIXED_FIELDS.size + self.max_payload + _TRAILER.size


@dataclass(frozen=True)
class DqtFile:
    coder: int
    backend: str
    precision: str
    fingerprint: str  # sha256 hex of the model weights (the file stores its first 8 bytes)
    height: int
    width: int
    layout: TokenLayout
    prob_bits: int
    logit_bits: int
    n_tokens: int  # length of the token sequence
    token_crc: int  # CRC-32 of the token sequence (content and position ids as little-endian int32)
    payload: bytes


def _name(value: str) -> bytes:
    raw = value.encode("ascii")
    if not 1 <= len(raw) <= MAX_NAME:
        raise ValueError(f"name {value!r} must be 1..{MAX_NAME} ASCII characters")
    return bytes([len(raw)]) + raw


def serialize(f: DqtFile) -> bytes:
    (hc, wc), (hf, wf) = f.layout.coarse_hw, f.layout.fine_hw
    body = (
        MAGIC
        + bytes([VERSION, f.coder, 0])
        + _name(f.backend)
        + _name(f.precision)
        + _FIXED_FIELDS.pack(
            bytes.fromhex(f.fingerprint)[:FINGERPRINT_BYTES], f.height, f.width, f.layout.n_codes, hc, wc, hf, wf, f.layout.n_classes,
            f.prob_bits, f.logit_bits, f.n_tokens, f.token_crc, len(f.payload),
        )
        + f.payload
    )
    return body + _TRAILER.pack(zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DqtFormatError("the .dqt file is truncated", HEADER_HINT)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def name(self, what: str) -> str:
        n = self.take(1)[0]
        raw = self.take(n)
        if not 1 <= n <= MAX_NAME or not raw.isascii() or not raw.decode("ascii").isprintable():
            raise DqtFormatError(f"the .dqt file has an invalid {what} name", HEADER_HINT)
        return raw.decode("ascii")


def check_prefix(data: bytes, limits: Limits) -> None:
    """Size, magic, version and checksum: the checks that need no field of the file."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise DqtFormatError("not a .dqt file (wrong magic bytes)", HEADER_HINT)
    if len(data) < len(MAGIC) + 1:
        raise DqtFormatError("the .dqt file is truncated", HEADER_HINT)
    if data[len(MAGIC)] != VERSION:
        raise DqtFormatError(f"unsupported .dqt version {data[len(MAGIC)]} (this dq-edge reads {VERSION})", "encode the image again with this dq-edge")
    if len(data) > limits.max_file_size:
        raise DqtFormatError(f"the .dqt file is {len(data)} bytes, more than this model's {limits.max_file_size}", HEADER_HINT)
    if len(data) < len(MAGIC) + 3 + 4 + _FIXED_FIELDS.size + _TRAILER.size:
        raise DqtFormatError("the .dqt file is truncated", HEADER_HINT)
    (stored,) = _TRAILER.unpack(data[-_TRAILER.size :])
    if zlib.crc32(data[: -_TRAILER.size]) != stored:
        raise DqtFormatError("the .dqt file is damaged (checksum mismatch)", "re-encode the image or copy the file again")


def parse(data: bytes, limits: Limits) -> DqtFile:
    """Bytes -> DqtFile, validated against the decoding model's limits."""
    check_prefix(data, limits)
    r = _Reader(data[: -_TRAILER.size])
    r.take(len(MAGIC) + 1)
    coder, flags = r.take(2)
    if coder not in CODER_NAMES or flags != 0:
        raise DqtFormatError(f"the .dqt file names an unknown coder ({coder}, flags {flags})", HEADER_HINT)
    backend, precision = r.name("backend"), r.name("precision")
    (digest, height, width, n_codes, hc, wc, hf, wf, n_classes, prob_bits, logit_bits, n_tokens, token_crc,
     n_payload) = _FIXED_FIELDS.unpack(r.take(_FIXED_FIELDS.size))
    fingerprint = digest.hex()
    layout = limits.layout
    if fingerprint != limits.fingerprint[: 2 * FINGERPRINT_BYTES]:
        raise ArtifactMismatchError(
            f"the file was encoded with model sha256 {fingerprint}..., not with this model ({limits.fingerprint[:16]}...)",
            "decode it with the model (or its export) that encoded it",
        )
    if (height, width) != (limits.image_size,) * 2 or (n_codes, (hc, wc), (hf, wf), n_classes) != (
        layout.n_codes, tuple(layout.coarse_hw), tuple(layout.fine_hw), layout.n_classes
    ):
        raise DqtFormatError("the .dqt header's image size or token layout contradicts its model", HEADER_HINT)
    if not 1 <= prob_bits <= 24 or logit_bits > 16:
        raise DqtFormatError(f"the .dqt file has invalid coder parameters ({prob_bits}, {logit_bits})", HEADER_HINT)
    if not layout.n_coarse + 4 <= n_tokens <= layout.max_length:
        raise DqtFormatError(f"the .dqt file has an invalid token count ({n_tokens})", HEADER_HINT)
    if n_payload > limits.max_payload:
        raise DqtFormatError(f"the .dqt payload length {n_payload} exceeds this model's bound {limits.max_payload}", HEADER_HINT)
    payload = r.take(n_payload)
    if r.pos != len(r.data):
        raise DqtFormatError(f"the .dqt file has {len(r.data) - r.pos} unexpected bytes after its payload", HEADER_HINT)
    return DqtFile(coder, backend, precision, fingerprint, height, width, layout, prob_bits, logit_bits,
                   n_tokens, token_crc, payload)


def peek_coding(data: bytes) -> tuple[int, str, str]:
    """(coder, backend, precision) from a file's first bytes, before any model is open (to pick
    the backend a file needs). Bounded; the full checks happen in `parse`."""
    if data[: len(MAGIC)] != MAGIC:
        raise DqtFormatError("not a .dqt file (wrong magic bytes)", HEADER_HINT)
    r = _Reader(data)
    r.take(len(MAGIC) + 1)
    coder = r.take(2)[0]
    return coder, r.name("backend"), r.name("precision")
