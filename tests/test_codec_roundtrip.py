"""The codec is lossless with respect to the tokens: decode(encode(x)) is exactly the image
`dq-edge reconstruct` gives (torch model folder) or the export's encoder + decoder give (ORT),
for the entropy coder and for the fixed-length baseline."""

from __future__ import annotations

import numpy as np
import pytest

from codec_fixtures import image_files, ort_codec, pixels, torch_codec
from dq_edge.codec import decode_files, encode_images, file_codes
from dq_edge.codec.container import parse
from dq_edge.errors import ArtifactMismatchError


def _reconstruct_cli_images(tmp_path) -> np.ndarray:
    """What `dq-edge reconstruct MODEL IMAGES` writes, read back from its PNGs."""
    from PIL import Image

    import runtime_fixtures
    from dq_edge.cli.main import main

    out = tmp_path / "recon"
    assert main(["reconstruct", str(runtime_fixtures.class_model_folder()), *map(str, image_files()), "--out", str(out)]) == 0
    return np.stack([np.asarray(Image.open(out / "recon" / f"{p.stem}.png").convert("RGB")) for p in image_files()])


@pytest.mark.parametrize("use_model", [True, False], ids=["entropy", "fixed"])
def test_torch_decode_of_encode_is_the_reconstruction(tmp_path, use_model):
    codec = torch_codec()
    classes = [i % codec.layout.n_classes for i in range(8)]
    encoded = encode_images(codec, pixels(), classes, use_model=use_model)
    decoded = decode_files(codec, [e.data for e in encoded])
    np.testing.assert_array_equal(decoded, _reconstruct_cli_images(tmp_path))
    assert [file_codes(codec, e.data)[0] for e in encoded] == classes  # the class travels in the file


@pytest.mark.parametrize("use_model", [True, False], ids=["entropy", "fixed"])
def test_ort_decode_of_encode_is_the_export_reconstruction(use_model):
    from dq_edge.runtime.images import to_uint8

    codec = ort_codec()
    x = pixels()
    encoded = encode_images(codec, x, [1] * len(x), use_model=use_model)
    _, codes = codec.backend.encode(x)
    np.testing.assert_array_equal(decode_files(codec, [e.data for e in encoded]), to_uint8(codec.backend.decode(codes)))


def test_entropy_coded_stream_costs_what_the_model_says():
    """The range coder spends -log2 P(tokens) plus at most a few words of flush."""
    codec = torch_codec()
    for e in encode_images(codec, pixels()[:4], [2] * 4):
        assert e.ideal_bits <= e.payload_bits <= e.ideal_bits + 64
        assert e.payload_bits == 8 * len(parse(e.data, codec.limits).payload)


def test_fixed_length_payload_matches_its_field_widths():
    """class: ceil(log2 C) bits, coarse positions + EOS: ceil(log2(Nc + 1)) each, codes: ceil(log2 K)."""
    import math

    codec = torch_codec()
    layout = codec.layout
    for e in encode_images(codec, pixels()[:4], use_model=False):
        grain = file_codes(codec, e.data)[1]
        n_coarse = int((grain == 0).sum())
        bits = (
            math.ceil(math.log2(layout.n_classes))
            + (n_coarse + 1) * math.ceil(math.log2(layout.n_coarse + 1))
            + e.n_codes * math.ceil(math.log2(layout.n_codes))
        )
        assert e.payload_bits == 8 * math.ceil(bits / 8)
        assert e.n_codes == n_coarse + 4 * int((grain == 1).sum())


def test_file_from_another_backend_or_model_is_refused():
    torch_file = encode_images(torch_codec(), pixels()[:1], [0])[0].data
    with pytest.raises(ArtifactMismatchError, match="torch fp32 probabilities"):
        decode_files(ort_codec(), [torch_file])
    from dq_edge.codec import open_model
    import export_helpers

    other = open_model(export_helpers.tiny_model_folder())  # unconditional, other weights
    with pytest.raises(ArtifactMismatchError, match="not with this model"):
        decode_files(other, [torch_file])


def test_fixed_length_file_decodes_on_any_backend_of_the_model():
    """Fixed-length files hold no probabilities: torch and ORT read the same tokens from them."""
    data = encode_images(torch_codec(), pixels()[:2], [0, 2], use_model=False)
    for e in data:
        a, b = file_codes(torch_codec(), e.data), file_codes(ort_codec(), e.data)
        assert a[0] == b[0] and np.array_equal(a[2], b[2])
