"""The fp32 export shipped in dq_edge/assets/default_export/ is current, and `dq-edge run` without
`--engine` uses it where neither torch nor onnx can be imported, exporting nothing.

"Current" means what `dq-edge export dq_edge/assets/model` gives today: the shipped weights'
sha256, this dq-edge's format version and graph IO, the dims of the model as loaded, and on ONNX
Runtime the same tokens as the torch reference for a seed. When a change to the graphs makes it
stale, these tests fail with the one command that regenerates it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dq_edge import EXPORT_FORMAT_VERSION
from dq_edge.artifact.export import load_export, read_manifest
from dq_edge.errors import ArtifactMismatchError
from dq_edge.runtime import default_model
from dq_edge.runtime.default_model import (
    DEFAULT_MAX_BATCH,
    SHIPPED_EXPORT,
    SHIPPED_MODEL,
    model_weights_sha256,
    shipped_export_problem,
)

STALE = "the shipped export dq_edge/assets/default_export is stale: regenerate it with `bash scripts/refresh_default_export.sh` and commit it"

# Neither torch nor onnx (the `export` extra) can be imported: a `pip install 'dq-edge[cpu]'`.
BLOCK_EXPORT_DEPS = textwrap.dedent(
    """
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "onnx"):
                raise ImportError(f"{name} is blocked: running the shipped export needs no exporter")
            return None

    sys.meta_path.insert(0, Block())
    from dq_edge.cli.main import main
    code = main(sys.argv[1:])
    leaked = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "onnx"})
    print("BLOCKED_MODULES_LOADED", leaked, file=sys.stderr)
    raise SystemExit(code or (3 if leaked else 0))
    """
)


def run_without_exporter(args: list[str], cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DQ_EDGE_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-c", BLOCK_EXPORT_DEPS, *args], capture_output=True, text=True, timeout=300, env=env)


def require_current() -> None:
    problem = shipped_export_problem(model_weights_sha256(SHIPPED_MODEL), "fp32")
    assert problem is None, f"{STALE} ({problem})"


def test_the_shipped_export_is_current():
    require_current()
    manifest = read_manifest(SHIPPED_EXPORT)
    assert manifest["format_version"] == EXPORT_FORMAT_VERSION, STALE
    assert manifest["max_batch"] == DEFAULT_MAX_BATCH and list(manifest["precisions"]) == ["fp32"], STALE
    assert manifest["source"]["model_path"] == "dq_edge/assets/model"  # no build machine's path
    try:
        load_export(SHIPPED_EXPORT, "fp32")  # every file present with its sha256, IO as graph_io derives it
    except ArtifactMismatchError as exc:
        pytest.fail(f"{STALE} ({exc.one_line()})")
    assert manifest["precisions"]["fp32"]["weights"]["file"] == "weights.fp32.bin"


def test_the_shipped_export_matches_the_model_and_the_torch_reference():
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from dq_edge.export.graphs import graph_dims, load_models
    from dq_edge.export.onnx_export import check_io
    from dq_edge.export.pipeline import ExportRequest
    from dq_edge.generation import SamplingParams
    from dq_edge.models.torch_backend import TorchBackend
    from dq_edge.runtime.pipeline import RunRequest, generate_images
    from dq_edge.runtime.session import open_runtime

    require_current()
    info = load_export(SHIPPED_EXPORT, "fp32")
    models = load_models(SHIPPED_MODEL)
    assert info.dims == graph_dims(models), STALE
    assert info.manifest["options"] == ExportRequest(SHIPPED_MODEL, SHIPPED_EXPORT).options(), STALE
    for graph, path in info.files.items():  # the files' own IO, not only the manifest's record of it
        check_io(onnx.load(str(path), load_external_data=False), info.specs[graph], f"{STALE}: {graph}")

    request = RunRequest(num=1, batch=1, classes=(3,), params=SamplingParams(seed=0))
    ort = open_runtime(SHIPPED_EXPORT, "ort-cpu", "fp32", threads=1)
    got = generate_images(ort.backend, ort.layout, request).tokens
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this small model steps faster on one thread (and CI shares its cores)
    try:
        torch_backend = TorchBackend(models.transformer, vae=models.vae, max_batch=1)
        ref = generate_images(torch_backend, torch_backend.layout, request).tokens
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(got.lengths, ref.lengths, err_msg=STALE)
    np.testing.assert_array_equal(got.content, ref.content, err_msg=STALE)
    np.testing.assert_array_equal(got.position, ref.position, err_msg=STALE)


def test_run_without_engine_uses_the_shipped_export_without_torch(tmp_path):
    require_current()
    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = run_without_exporter(["run", "--num", "2", "--batch", "2", "--seed", "1", "--threads", "1", "--out", str(out), "--quiet"], cache)
    assert proc.returncode == 0, proc.stderr
    assert "BLOCKED_MODULES_LOADED []" in proc.stderr
    assert not cache.exists()  # nothing exported, nothing cached
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == str(SHIPPED_EXPORT) and summary["precision"] == "fp32" and summary["images"] == 2
    assert sorted(p.name for p in out.glob("image_*.png")) == ["image_0000.png", "image_0001.png"]


def test_other_precisions_still_need_the_exporter(tmp_path):
    cache = tmp_path / "cache"
    proc = run_without_exporter(["run", "--precision", "fp16", "--num", "1", "--out", str(tmp_path / "out"), "--quiet"], cache)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("BLOCKED_MODULES_LOADED")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "needs torch and onnx" in lines[0], proc.stderr
    assert "pip install 'dq-edge[export]'" in lines[0] and "--engine" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_mismatched_shipped_export_is_not_used(tmp_path, monkeypatch):
    weights = model_weights_sha256(SHIPPED_MODEL)
    assert shipped_export_problem(weights, "fp16") == f"{SHIPPED_EXPORT} holds no fp16 graphs"
    assert "was exported from weights" in shipped_export_problem("0" * 64, "fp32")
    assert "no shipped export" in shipped_export_problem(weights, "fp32", tmp_path / "nothing")

    stale = tmp_path / "stale"
    shutil.copytree(SHIPPED_EXPORT, stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    step = manifest["precisions"]["fp32"]["graphs"]["transformer_position_step"]["spec"]
    step["inputs"] = step["inputs"][:-1]  # as if the step graphs' IO changed since it was exported
    (stale / "manifest.json").write_text(json.dumps(manifest))
    assert "differs from this dq-edge's graph specs" in shipped_export_problem(weights, "fp32", stale)

    # ... and then `dq-edge run` without --engine exports the model instead (here: refuses, no torch)
    from dq_edge.cli import first_use_export

    monkeypatch.setattr(default_model, "SHIPPED_EXPORT", stale)
    monkeypatch.setenv("DQ_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(first_use_export, "_importable", lambda module: False)
    with pytest.raises(Exception, match="must be exported to ONNX once"):
        first_use_export.ensure_default_export("fp32")
