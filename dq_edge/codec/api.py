"""Library API of the .dqt codec (torch-free; a model folder imports torch lazily):

    model = open_model("dq_edge/assets/model")           # or an export folder (ONNX Runtime)
    encoded = encode_images(model, pixels, classes=[3])   # pixels float32 [N, 3, H, W] in [-1, 1]
    images = decode_files(model, [e.data for e in encoded])  # uint8 [N, H, W, 3]

Whole-image graphs run in groups of `batch_size` images, as `dq-edge reconstruct` runs them,
so decode(encode(x)) is the reconstruction of x pixel for pixel; the token steps run one image
at a time (batch 1 in encoder and decoder, so both see the same logits).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dq_edge.codec import fixed_coder
from dq_edge.codec.container import CODER_FIXED, CODER_MODEL, DqtFile, DqtFormatError, parse, serialize
from dq_edge.codec.frequencies import LOGIT_BITS, PROB_BITS
from dq_edge.codec.model import CodecModel
from dq_edge.codec.model_coder import decode_with_model, encode_with_model
from dq_edge.errors import ArtifactMismatchError, DQEdgeError, InputError
from dq_edge.sequences import decode_tokens, encode_tokens, fine_cell_mask, region_ratio
from dq_edge.tokens import TokenLayout

BATCH_SIZE = 16  # = the default of `dq-edge reconstruct`, so decoder outputs match it bit for bit


@dataclass
class Encoded:
    data: bytes  # the whole .dqt file
    payload_bits: int  # the coded stream alone
    ideal_bits: float  # -log2 P(tokens) under the quantized model (model coder), else = payload bits
    pixels: int
    n_codes: int  # code tokens: coarse regions + fine cells
    fine_ratio: float
    fixed_bound_bits: float  # n_codes * log2(K): the fixed-length reference
    seconds: float  # token coding time of this image (the whole-image graphs are shared by a batch)
    cls: int | None

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole file (header and checksum included)."""
        return 8 * len(self.data) / self.pixels

    @property
    def payload_bpp(self) -> float:
        return self.payload_bits / self.pixels


def token_crc(content: np.ndarray, position: np.ndarray) -> int:
    return zlib.crc32(np.stack([content, position]).astype("<i4").tobytes())


def _classes(layout: TokenLayout, n: int, classes: Sequence[int | None] | None) -> list[int | None]:
    if layout.n_classes == 0:
        if classes is not None and any(c is not None for c in classes):
            raise InputError("this model is unconditional; it takes no class", "omit the class")
        return [None] * n
    chosen = [0] * n if classes is None else [0 if c is None else int(c) for c in classes]
    if len(chosen) != n:
        raise InputError(f"{len(chosen)} classes for {n} images", "pass one class per image")
    bad = [c for c in chosen if not 0 <= c < layout.n_classes]
    if bad:
        raise InputError(f"class {bad[0]} is out of range for this model (0..{layout.n_classes - 1})", f"pass a class between 0 and {layout.n_classes - 1}")
    return chosen


def _check_pixels(model: CodecModel, pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels, dtype=np.float32)
    size = model.image_size
    if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size):
        raise InputError(f"images must be float32 [N, 3, {size}, {size}], got {pixels.shape}", f"resize the images to {size}x{size}")
    return pixels


def encode_images(
    model: CodecModel, pixels: np.ndarray, classes: Sequence[int | None] | None = None, use_model: bool = True,
    batch_size: int = BATCH_SIZE,
) -> list[Encoded]:
    """Images float32 [N, 3, H, W] in [-1, 1] -> one Encoded (.dqt bytes + statistics) each.
    `classes`: one class per image for class-conditional models (default 0)."""
    pixels = _check_pixels(model, pixels)
    chosen = _classes(model.layout, len(pixels), classes)
    out: list[Encoded] = []
    for lo in range(0, len(pixels), batch_size):
        grains, codes = model.backend.encode(pixels[lo : lo + batch_size])  # [b, Hc, Wc], [b, Hf, Wf]
        for i in range(len(grains)):
            out.append(_encode_one(model, grains[i], codes[i], chosen[lo + i], use_model))
    return out


def encode_image(model: CodecModel, pixels: np.ndarray, cls: int | None = None, use_model: bool = True) -> Encoded:
    """One image float32 [3, H, W] (or [1, 3, H, W])."""
    return encode_images(model, np.asarray(pixels).reshape(1, *np.shape(pixels)[-3:]), None if cls is None else [cls], use_model)[0]


def _encode_one(model: CodecModel, grain: np.ndarray, codes: np.ndarray, cls: int | None, use_model: bool) -> Encoded:
    layout = model.layout
    start = time.perf_counter()
    content, position, segment = encode_tokens(layout, grain, codes, cls)
    if use_model:
        payload, ideal = encode_with_model(model.backend, layout, cls, content, position)
    else:
        grid = segment == 0
        coarse = position[grid & (position < layout.n_coarse)]
        payload = fixed_coder.pack(layout, cls, coarse, content[content < layout.n_codes])
        ideal = 8.0 * len(payload)
    seconds = time.perf_counter() - start
    dqt = DqtFile(
        coder=CODER_MODEL if use_model else CODER_FIXED, backend=model.backend_name, precision=model.precision,
        fingerprint=model.fingerprint, height=model.image_size, width=model.image_size, layout=layout,
        prob_bits=PROB_BITS, logit_bits=LOGIT_BITS, n_tokens=len(content), token_crc=token_crc(content, position),
        payload=payload,
    )
    n_codes = len(content) - 4
    return Encoded(
        data=serialize(dqt), payload_bits=8 * len(payload), ideal_bits=ideal, pixels=model.image_size**2,
        n_codes=n_codes, fine_ratio=float(np.mean(grain == 1)), fixed_bound_bits=n_codes * float(np.log2(layout.n_codes)),
        seconds=seconds, cls=cls,
    )


def read_header(model: CodecModel, data: bytes) -> DqtFile:
    """Parse and check that `model` can decode this file (same model; for entropy-coded files
    also the same backend and precision, which fix the probabilities)."""
    dqt = parse(data, model.limits)
    if dqt.coder == CODER_MODEL:
        if (dqt.backend, dqt.precision) != (model.backend_name, model.precision):
            raise ArtifactMismatchError(
                f"the file was entropy-coded with {dqt.backend} {dqt.precision} probabilities; this model runs {model.backend_name} {model.precision}",
                f"decode it with backend {dqt.backend} at precision {dqt.precision} (the probabilities must match bit for bit)",
            )
        if (dqt.prob_bits, dqt.logit_bits) != (PROB_BITS, LOGIT_BITS):
            raise DqtFormatError(f"the file uses coder parameters {dqt.prob_bits}/{dqt.logit_bits}, this dq-edge {PROB_BITS}/{LOGIT_BITS}", "encode it again with this dq-edge")
    return dqt


def file_codes(model: CodecModel, data: bytes) -> tuple[int | None, np.ndarray, np.ndarray]:
    """.dqt bytes -> (class, grain int64 [Hc, Wc], codes int64 [Hf, Wf]); tokens verified."""
    layout = model.layout
    dqt = read_header(model, data)
    if dqt.coder == CODER_MODEL:
        cls, content, position, segment = decode_with_model(model.backend, layout, dqt.payload)
    else:
        cls, grain, ordered = fixed_coder.unpack(layout, dqt.payload)
        content, position, segment = encode_tokens(layout, grain, _code_map(layout, grain, ordered), cls)
    if len(content) != dqt.n_tokens or token_crc(content, position) != dqt.token_crc:
        raise DqtFormatError(
            "the decoded tokens do not match the file's token checksum",
            "the file is damaged, or was encoded where this backend's probabilities differ; re-encode it here",
        )
    grain, codes = decode_tokens(layout, content, position, segment)
    return cls, grain, codes


def _code_map(layout: TokenLayout, grain: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Codes in token order (coarse regions, then fine cells) -> code map int64 [Hf, Wf]."""
    r = region_ratio(layout)
    coarse = np.flatnonzero(grain.reshape(-1) == 0)
    fine = np.flatnonzero(fine_cell_mask(layout, grain).reshape(-1))
    region = np.zeros(layout.n_coarse, dtype=np.int64)
    region[coarse] = ordered[: len(coarse)]
    codes = np.repeat(np.repeat(region.reshape(layout.coarse_hw), r, axis=0), r, axis=1).reshape(-1)  # [Hf * Wf]
    codes[fine] = ordered[len(coarse) :]
    return codes.reshape(layout.fine_hw)


def decode_files(
    model: CodecModel, blobs: Sequence[bytes], batch_size: int = BATCH_SIZE, names: Sequence[str] | None = None
) -> np.ndarray:
    """.dqt bytes of N files -> uint8 images [N, H, W, 3] (the decoder in groups of batch_size).
    With `names`, an error names the file it comes from."""
    from dq_edge.runtime.images import to_uint8

    maps = []
    for i, data in enumerate(blobs):
        try:
            maps.append(file_codes(model, data)[2])
        except DQEdgeError as exc:
            if names is None:
                raise
            raise type(exc)(f"{names[i]}: {exc.message}", exc.hint) from exc
    codes = np.stack(maps)  # [N, Hf, Wf]
    parts = [to_uint8(model.backend.decode(codes[lo : lo + batch_size])) for lo in range(0, len(codes), batch_size)]
    return np.concatenate(parts)


def decode_file(model: CodecModel, data: bytes) -> np.ndarray:
    """One .dqt file's bytes -> uint8 image [H, W, 3]."""
    return decode_files(model, [data])[0]
