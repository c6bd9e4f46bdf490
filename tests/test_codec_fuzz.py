"""Fuzzing the .dqt parser and decoder: truncated, bit-flipped, extended, spliced and random
files end in a typed error (DQEdgeError) or, when a change leaves a valid file, a valid
decode; never another exception, a hang or a large allocation.

Two layers are fuzzed: raw mutations (the CRC-32 trailer catches almost all of them) and
mutations with the trailer recomputed, so every header field check and the payload decoders
see hostile values. Thousands of cases, bounded time (well under 30 s on a loaded 2-core box).
"""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec_fixtures import pixels, torch_codec
from dq_edge.codec import encode_images, file_codes, read_header
from dq_edge.codec.container import parse
from dq_edge.codec.files import read_dqt
from dq_edge.errors import DQEdgeError

CASE_SECONDS = 2.0  # a hang guard: one case decodes at most one tiny sequence
PEAK_BYTES = 4 << 20  # no case may allocate more than a few MB


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    codec = torch_codec()
    x = pixels()[:2]
    entropy = encode_images(codec, x, [0, 2])
    fixed = encode_images(codec, x, [1, 0], use_model=False)
    return {"entropy0": entropy[0].data, "entropy1": entropy[1].data, "fixed0": fixed[0].data, "fixed1": fixed[1].data}


def _refresh_crc(data: bytes) -> bytes:
    body = data[:-4] if len(data) >= 4 else data
    return body + struct.pack("<I", zlib.crc32(body))


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(6)
    b = bytearray(data)
    if kind == 0:  # truncate
        return bytes(b[: rng.integers(0, len(b))])
    if kind == 1:  # flip 1-4 bits
        for _ in range(rng.integers(1, 5)):
            i = rng.integers(len(b))
            b[i] ^= 1 << rng.integers(8)
        return bytes(b)
    if kind == 2:  # extend
        return bytes(b) + rng.bytes(int(rng.integers(1, 64)))
    if kind == 3:  # overwrite a run with random or extreme bytes
        i = rng.integers(len(b))
        n = int(rng.integers(1, 8))
        b[i : i + n] = rng.bytes(n) if rng.random() < 0.5 else b"\xff" * n
        return bytes(b)
    if kind == 4:  # delete or duplicate a run
        i, n = rng.integers(len(b)), int(rng.integers(1, 16))
        return bytes(b[:i] + b[i + n :]) if rng.random() < 0.5 else bytes(b[:i] + b[i : i + n] + b[i:])
    return rng.bytes(int(rng.integers(0, 2 * len(b))))  # random bytes


def _outcome(decode, data: bytes) -> str:
    """'ok' | 'typed'; raises AssertionError on anything else, on slowness or on a large allocation."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        decode(data)
        result = "ok"
    except DQEdgeError:
        result = "typed"
    except Exception as exc:  # noqa: BLE001 - this is what the fuzz run counts
        raise AssertionError(f"raw {type(exc).__name__}: {exc} on {data.hex()}") from exc
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < CASE_SECONDS, f"{seconds:.1f} s on {data.hex()}"
    assert peak < PEAK_BYTES, f"{peak} bytes allocated on {data.hex()}"
    return result


def test_mutated_files_give_typed_errors(files):
    """4000 mutations of fixed-length files, raw and with a recomputed checksum, through the
    whole token decode (parser, bit unpacking, sequence checks)."""
    codec = torch_codec()
    rng = np.random.default_rng(0)
    counts = {"ok": 0, "typed": 0}
    decode = lambda d: file_codes(codec, d)  # noqa: E731
    for i in range(4000):
        source = files["fixed0" if i % 2 else "fixed1"]
        mutated = _mutate(source, rng)
        if i % 4 >= 2:
            mutated = _refresh_crc(mutated)
        counts[_outcome(decode, mutated)] += 1
    assert counts["typed"] > 3000, counts  # the checks fire; the rest are harmless (e.g. a flipped padding bit)


def test_mutated_entropy_headers_give_typed_errors(files):
    """Header and trailer bit flips of entropy-coded files: the header checks stop them without
    running the model, except flips in fields only the decode can check (token count, token
    checksum); a sample of those runs the whole decode and must fail there."""
    codec = torch_codec()
    rng = np.random.default_rng(1)
    header_end = len(files["entropy0"]) - 4 - len(parse(files["entropy0"], codec.limits).payload)
    passed_header = []
    for i in range(3000):
        b = bytearray(files["entropy0"])
        j = int(rng.integers(header_end))
        b[j] ^= 1 << int(rng.integers(8))
        mutated = bytes(b) if i % 2 else _refresh_crc(bytes(b))
        if _outcome(lambda d: read_header(codec, d), mutated) == "ok":
            passed_header.append(mutated)
    assert len(passed_header) < 600
    assert all(_outcome(lambda d: file_codes(codec, d), m) == "typed" for m in passed_header[:20])


def test_damaged_entropy_payloads_decode_boundedly_to_a_typed_error(files):
    """Payload bits flipped with the checksum recomputed: the range decoder still yields a legal,
    bounded token sequence; the token checksum rejects it unless the flip hit bits the decoder
    never reads (then the tokens are the original ones)."""
    codec = torch_codec()
    rng = np.random.default_rng(2)
    data = files["entropy1"]
    original = file_codes(codec, data)[2]
    payload = len(parse(data, codec.limits).payload)
    typed = 0
    for _ in range(15):
        b = bytearray(data)
        j = len(data) - 4 - payload + int(rng.integers(payload))
        b[j] ^= 1 << int(rng.integers(8))
        damaged = _refresh_crc(bytes(b))
        if _outcome(lambda d: file_codes(codec, d), damaged) == "typed":
            typed += 1
        else:
            assert np.array_equal(file_codes(codec, damaged)[2], original)
    assert typed >= 8


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), fix_crc=st.booleans(), keep_magic=st.booleans())
def test_arbitrary_bytes_give_typed_errors(files, data, fix_crc, keep_magic):
    codec = torch_codec()
    if keep_magic:
        data = files["fixed0"][:9] + data
    if fix_crc:
        data = _refresh_crc(data)
    _outcome(lambda d: file_codes(codec, d), data)


def test_huge_file_is_refused_before_reading(tmp_path, files):
    codec = torch_codec()
    path = tmp_path / "huge.dqt"
    with open(path, "wb") as fh:
        fh.write(files["fixed0"][:16])
        fh.truncate(1 << 30)  # sparse: 1 GiB on paper
    tracemalloc.start()
    with pytest.raises(DQEdgeError, match="more than a .dqt file of this model can be"):
        read_dqt(path, codec.limits)
    assert tracemalloc.get_traced_memory()[1] < PEAK_BYTES
    tracemalloc.stop()


@pytest.mark.parametrize("payload", [b"", bytes(4), b"\xff" * 8, bytes(3)], ids=["empty", "zeros", "ones", "odd"])
def test_degenerate_entropy_payloads_give_typed_errors(files, payload):
    """Well-formed headers around payloads the range decoder cannot have written."""
    from dataclasses import replace

    from dq_edge.codec.container import serialize

    codec = torch_codec()
    header = parse(files["entropy0"], codec.limits)
    forged = serialize(replace(header, fingerprint=codec.fingerprint, payload=payload))
    assert _outcome(lambda d: file_codes(codec, d), forged) == "typed"
