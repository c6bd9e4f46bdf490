"""Continuous batching: `num` images on `batch` rows, finished rows refilled at once, give exactly
the tokens of `num` separate batch-1 generations with the per-image seeds (seed + i), on ONNX
Runtime CPU and the torch backend, with and without classes and guidance."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import export_helpers
from dq_edge.errors import InputError
from dq_edge.export.manifest import load_export
from dq_edge.generation import ContinuousBatcher, Generator, SamplingParams, generate_tokens, image_requests
from dq_edge.runtime.ort_backend import OrtBackend
from dq_edge.runtime.pipeline import RunRequest, generate_images
from runtime_fixtures import class_export, class_model_folder

torch = pytest.importorskip("torch")


def _ort(export_folder) -> OrtBackend:
    info = load_export(export_folder, "fp32")
    return OrtBackend(info.files, info.dims, info.layout, "fp32", info.max_batch, threads=1)


def _torch(model_folder):
    from dq_edge.models.torch_backend import TorchBackend
    from dq_edge.models.transformer import load_transformer

    return TorchBackend(load_transformer(model_folder), max_batch=export_helpers.MAX_BATCH)


def _one_by_one(backend, num, classes, params):
    """Image i alone: a batch of one with seed + i."""
    out = []
    for i in range(num):
        cls = None if classes is None else [classes[i]]
        tb = generate_tokens(backend, backend.layout, 1, cls, replace(params, seed=params.seed + i))
        out.append(tb.sample(0))
    return out


def _assert_rows_equal(got, want):
    assert got.batch == len(want)
    for i, (content, position, segment) in enumerate(want):
        np.testing.assert_array_equal(got.sample(i)[0], content, err_msg=f"image {i}")
        np.testing.assert_array_equal(got.sample(i)[1], position, err_msg=f"image {i}")
        np.testing.assert_array_equal(got.sample(i)[2], segment, err_msg=f"image {i}")


def _continuous(backend, num, batch, classes, params):
    return ContinuousBatcher(backend, image_requests(num, classes, params), batch, params).run()


@pytest.mark.parametrize("num,batch", [(5, 2), (7, 4), (3, 4)])
def test_continuous_equals_batch_one_on_ort_cpu(num, batch):
    backend = _ort(export_helpers.tiny_export())
    params = SamplingParams(seed=11, top_k=40)
    got = _continuous(backend, num, batch, None, params)
    _assert_rows_equal(got, _one_by_one(backend, num, None, params))
    assert len(set(got.lengths.tolist())) > 1  # rows really finished at different steps


def test_continuous_with_classes_and_guidance_on_ort_cpu():
    backend = _ort(class_export())
    classes = [0, 2, 1, 1, 0]
    for params in (SamplingParams(seed=3), SamplingParams(seed=5, cfg_scale=1.5, top_p=0.9)):
        batch = 2 if params.cfg_scale else 3  # guidance: 2 backend rows per image
        got = _continuous(backend, len(classes), batch, classes, params)
        _assert_rows_equal(got, _one_by_one(backend, len(classes), classes, params))
        assert (got.content[:, 0] - backend.layout.content_start(0)).tolist() == classes


@pytest.mark.parametrize("classes", [None, [1, 0, 2, 2, 1, 0]])
def test_continuous_equals_batch_one_on_torch(classes):
    folder = class_model_folder() if classes else export_helpers.tiny_model_folder()
    backend = _torch(folder)
    params = SamplingParams(seed=2, temperature=0.9)
    got = _continuous(backend, 6, 4, classes, params)
    _assert_rows_equal(got, _one_by_one(backend, 6, classes, params))


def test_run_pipeline_static_and_continuous_give_the_same_images():
    backend = _ort(class_export())
    base = RunRequest(num=5, batch=2, classes=(0, 1, 2, 0, 1), params=SamplingParams(seed=9))
    cont = generate_images(backend, backend.layout, base)
    stat = generate_images(backend, backend.layout, replace(base, batching="static"))
    np.testing.assert_array_equal(cont.tokens.content, stat.tokens.content)
    np.testing.assert_array_equal(cont.codes, stat.codes)
    assert cont.images.shape[0] == 5 and np.array_equal(cont.images, stat.images)


def test_admit_is_refused_with_a_prefix_or_mid_step():
    backend = _ort(export_helpers.tiny_export())
    gen = Generator(backend, 2, params=SamplingParams(seed=0), seeds=[0, 1])
    with pytest.raises(InputError, match="seed"):
        gen.admit(0)  # per-image streams: a new image needs its seed
    with pytest.raises(InputError, match="outside"):
        gen.admit(5, seed=3)
    with pytest.raises(InputError, match="seeds for"):
        Generator(backend, 2, seeds=[0])
    with pytest.raises(InputError, match="unknown batching"):
        generate_images(backend, backend.layout, RunRequest(2, 2, None, SamplingParams(), batching="dynamic"))


def test_run_refuses_an_unknown_batching(tmp_path, capsys):
    from dq_edge.cli.main import main

    assert main(["run", "--out", str(tmp_path / "o"), "--batching", "dynamic", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --batching must be continuous or static")
    assert not (tmp_path / "o").exists()
