"""fp32 parity: ONNX Runtime CPU on the exported graphs == the torch reference (tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export_helpers import MAX_BATCH, images, tiny_export, tiny_model_folder

from dq_edge.export.drive import cpu_session, run, teacher_forced_steps, token_sequences
from dq_edge.export.graphs import load_models
from dq_edge.export.manifest import load_export

TOL = 1e-4


@pytest.fixture(scope="module")
def setup():
    info = load_export(tiny_export(), "fp32")
    models = load_models(tiny_model_folder())
    sessions = {g: cpu_session(p) for g, p in info.files.items()}
    return info, models, sessions


def _torch(fn, *arrays):
    with torch.no_grad():
        out = fn(*(torch.from_numpy(a) for a in arrays))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("batch", [1, 3])
def test_vae_graphs_match_torch(setup, batch):
    info, models, s = setup
    x = images(batch, seed=batch)
    feats = run(s["encoder"], {"image": x})
    ref_c, ref_f = _torch(models.vae.features, x)
    assert np.abs(feats["h_coarse"] - ref_c).max() <= TOL
    assert np.abs(feats["h_fine"] - ref_f).max() <= TOL
    dgc = run(s["dgc"], {"h_coarse": ref_c, "h_fine": ref_f})
    grain, codes = _torch(models.vae.dgc, ref_c, ref_f)
    np.testing.assert_array_equal(dgc["grain"], grain)
    np.testing.assert_array_equal(dgc["codes"], codes)
    assert dgc["grain"].dtype == np.int64 and dgc["codes"].dtype == np.int64
    (ref_img,) = _torch(models.vae.decode_codes, codes)
    dec = run(s["decoder"], {"codes": codes})
    assert np.abs(dec["image"] - ref_img).max() <= TOL


def _sequences(models, s, n, seed, all_fine=False):
    x = images(n, seed=seed)
    feats = run(s["encoder"], {"image": x})
    out = run(s["dgc"], feats)
    grain = np.ones_like(out["grain"]) if all_fine else out["grain"]
    return token_sequences(grain, out["codes"], models.layout)


def test_steps_match_teacher_forcing_at_every_step(setup):
    """Real image token sequences of different lengths (batch 2, right padded) and one
    all-fine sequence of the maximum length L, driven step by step through the graphs."""
    info, models, s = setup
    cases = [_sequences(models, s, 2, seed=11), _sequences(models, s, 1, seed=12, all_fine=True)]
    assert cases[1][0].shape[1] == info.max_length  # T = L runs without re-export
    for content, position, segment, lengths in cases:
        tf = teacher_forced_steps(
            s["transformer_position_step"], s["transformer_content_step"], info.dims, "fp32", content, position, segment
        )
        ref_p, ref_c = _torch(models.transformer, content, position, segment)
        for i, n in enumerate(lengths):
            rows = slice(0, int(n) - 1)  # rows past a sample's end see padding: not compared
            assert np.abs(tf.position_logits[i, rows] - ref_p[i, rows]).max() <= TOL
            assert np.abs(tf.content_logits[i, rows] - ref_c[i, rows]).max() <= TOL


@pytest.mark.parametrize("tokens", [2, 7, "L"])
def test_prefill_matches_torch_and_steps(setup, tokens):
    info, models, s = setup
    content, position, segment, _ = _sequences(models, s, 1, seed=13, all_fine=True)
    T = info.max_length if tokens == "L" else tokens
    c, p, g = (np.repeat(a[:, :T], 2, axis=0) for a in (content, position, segment))  # batch 2
    out = run(s["transformer_prefill"], {"content": c, "position": p, "segment": g})
    from dq_edge.models.kv_steps import Prefill

    ref = _torch(Prefill(models.transformer), c, p, g)
    names = [o.name for o in s["transformer_prefill"].get_outputs()]
    for name, r in zip(names, ref):
        assert out[name].shape == r.shape, name
        assert np.abs(out[name] - r).max() <= TOL, name
    # the prefill caches hold the rows the step graphs write token by token (rows < T-1)
    tf = teacher_forced_steps(s["transformer_position_step"], s["transformer_content_step"], info.dims, "fp32", c, p, g)
    for stack, cache in (("position", tf.position_cache), ("content", tf.content_cache)):
        for past, rows in cache.items():
            pre = out[f"{stack}_{past.replace('past_', 'present_', 1)}"]  # [B, H, T or T-1, D]
            assert pre.shape[2] == (T if stack == "position" else T - 1)
            assert np.abs(pre[:, :, : T - 1] - rows[:, :, : T - 1]).max() <= TOL


def test_batch_is_dynamic_up_to_max(setup):
    info, models, s = setup
    x = images(MAX_BATCH, seed=5)
    feats = run(s["encoder"], {"image": x})
    assert feats["h_fine"].shape[0] == MAX_BATCH
    assert info.specs["encoder"].ranges["batch"] == (1, MAX_BATCH, MAX_BATCH)


def test_dynamo_exporter_gives_equivalent_rule_abiding_graphs(setup, tmp_path):
    """`--exporter dynamo` (torch.export): the varargs KV step graph and the dynamic-token
    prefill export, pass every TensorRT-readiness rule and match the default (legacy) files."""
    import onnx

    from dq_edge.export.checks import check_model
    from dq_edge.export.graphs import example_inputs, graph_modules
    from dq_edge.export.onnx_export import export_graph

    info, models, s = setup
    modules = graph_modules(models)
    content, position, segment, _ = _sequences(models, s, 1, seed=14, all_fine=True)
    for graph in ("transformer_position_step", "transformer_prefill"):
        spec = info.specs[graph]
        path = tmp_path / f"{graph}.onnx"
        with torch.no_grad():
            model = export_graph(modules[graph], spec, example_inputs(spec, info.dims, {"batch": 2, "tokens": 6, "cache_rows": info.dims.max_length - 1}), path, exporter="dynamo")
        assert all(f.ok for f in check_model(model, graph, "fp32")), [f for f in check_model(model, graph, "fp32") if not f.ok]
        assert len(model.graph.node) < len(onnx.load(str(info.files[graph])).graph.node)  # cleaner graph
        dyn = cpu_session(path)
        T = 9
        if graph == "transformer_prefill":
            feed = {"content": content[:, :T], "position": position[:, :T], "segment": segment[:, :T]}
        else:
            tf = teacher_forced_steps(
                s["transformer_position_step"], s["transformer_content_step"], info.dims, "fp32",
                content[:, :T], position[:, :T], segment[:, :T], record=lambda t: t == T - 2,
            )
            feed = tf.position_feeds[0]
        a, b = run(dyn, feed), run(s[graph], feed)
        for name in a:
            assert np.abs(a[name] - b[name]).max() <= TOL, (graph, name)


def test_torch_parity_summary_on_the_tiny_model():
    """The function the accuracy benchmark uses to report parity on the shipped model."""
    from dq_edge.export.parity import torch_parity

    r = torch_parity(tiny_export(), load_models(tiny_model_folder()), images(2, seed=31))
    assert r["grain_identical"] and r["codes_identical"]
    assert r["steps"] > 20
    for key in ("encoder_max_error", "decoder_max_error", "position_logits_max_error", "content_logits_max_error", "prefill_max_error"):
        assert 0 <= r[key] <= TOL, key


SHIPPED = __import__("pathlib").Path(__file__).resolve().parents[1] / "dq_edge" / "assets" / "model"


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped model in dq_edge/assets/model")
def test_shipped_model_fp32_parity(tmp_path):
    from dq_edge.export.parity import torch_parity
    from dq_edge.export.pipeline import ExportRequest, export_model

    export_model(ExportRequest(model=SHIPPED, out=tmp_path / "export", precisions=["fp32"], max_batch=2))
    models = load_models(SHIPPED)
    from dq_edge.data.batches import to_float
    from dq_edge.data.registry import load_dataset

    samples = load_dataset(str(SHIPPED.parent / "samples"), split="all", image_size=models.image_size)
    r = torch_parity(tmp_path / "export", models, to_float(samples.images[:2]))
    assert r["grain_identical"] and r["codes_identical"]
    for key in ("encoder_max_error", "decoder_max_error", "position_logits_max_error", "content_logits_max_error", "prefill_max_error"):
        if key in r:
            assert r[key] <= TOL, (key, r[key])
