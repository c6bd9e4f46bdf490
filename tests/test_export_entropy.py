"""Entropy-router VAE (dgc reads the image) in a VAE-only model folder: export, parity, check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export_helpers import images, workdir

from dq_edge.export.accuracy import encode
from dq_edge.export.checks import check_export
from dq_edge.export.drive import cpu_session, run
from dq_edge.export.manifest import load_export
from dq_edge.export.pipeline import ExportRequest, export_model


@pytest.fixture(scope="module")
def entropy_export():
    from dq_edge.models.routers import percentile_thresholds
    from dq_edge.models.vae import build_vae, save_vae

    vae = build_vae("tiny-entropy", seed=3)
    with torch.no_grad():
        calib = torch.from_numpy(images(6, seed=40))
        vae.router.set_thresholds(percentile_thresholds([vae.router.entropy(calib)]))
    model = save_vae(vae, workdir() / "entropy-model")
    out = workdir() / "entropy-export"
    export_model(ExportRequest(model=model, out=out, precisions=["fp32", "fp16"], max_batch=2))
    return vae.eval(), out


def test_dgc_takes_the_image_and_matches_torch(entropy_export):
    vae, out = entropy_export
    info = load_export(out, "fp32")
    assert [t.name for t in info.specs["dgc"].inputs] == ["h_coarse", "h_fine", "image"]
    assert set(info.files) == {"encoder", "dgc", "decoder"}  # no transformer in this folder
    x = images(2, seed=41)  # not the threshold images: no region sits exactly on the threshold
    s = {g: cpu_session(p) for g, p in info.files.items()}
    grain, codes = encode(s, x, "entropy")
    with torch.no_grad():
        ref = vae.encode(torch.from_numpy(x))
        ref_img = vae.decode_codes(ref.codes).numpy()
    np.testing.assert_array_equal(grain, ref.grain.numpy())
    np.testing.assert_array_equal(codes, ref.codes.numpy())
    assert 0 < grain.mean() < 1  # both grains occur, so the router really is exercised
    assert np.abs(run(s["decoder"], {"codes": codes})["image"] - ref_img).max() <= 1e-4
    s16 = {g: cpu_session(p) for g, p in load_export(out, "fp16").files.items()}
    grain16, _ = encode(s16, x, "entropy")
    np.testing.assert_array_equal(grain16, grain)  # the entropy router reads the fp32 image


def test_entropy_export_passes_check(entropy_export):
    report = check_export(entropy_export[1], lint=True)
    assert report.ok, report.failures()
    assert len({(f.graph, f.precision) for f in report.findings}) == 6
