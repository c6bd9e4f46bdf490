"""`from dq_edge import Pipeline`: export folders without torch, model folders with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import export_helpers
from dq_edge.errors import InputError

SCRIPT = textwrap.dedent(
    """
    import json, sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked")
            return None

    sys.meta_path.insert(0, BlockTorch())
    from dq_edge import Pipeline
    from dq_edge.errors import DQEdgeError

    pipe = Pipeline.from_folder(sys.argv[1], backend="ort-cpu", threads=1)
    out = pipe(num=3, seed=4, batch=2)
    try:
        Pipeline.from_folder(sys.argv[2])
        model_error = None
    except DQEdgeError as exc:
        model_error = exc.one_line()
    print(json.dumps({
        "sizes": [im.size for im in out.images], "modes": [im.mode for im in out.images],
        "content": out.tokens.content.tolist(), "timed": sorted(out.timings["stages_s"]),
        "wall": out.timings["wall_s"], "model_error": model_error,
        "torch": [m for m in sys.modules if m == "torch" or m.startswith("torch.")],
    }))
    """
)


def test_pipeline_on_an_export_without_torch():
    export, model = export_helpers.tiny_export(), export_helpers.tiny_model_folder()
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(export), str(model)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["torch"] == [] and got["wall"] > 0 and "position_step" in got["timed"]
    from dq_edge.runtime.pipeline import RunRequest, generate_images
    from dq_edge.runtime.session import open_runtime
    from dq_edge.generation import SamplingParams

    opened = open_runtime(export, "ort-cpu", "fp32", threads=1)
    size = opened.backend.dims.image_size
    assert got["sizes"] == [[size, size]] * 3 and got["modes"] == ["RGB"] * 3
    ref = generate_images(opened.backend, opened.layout, RunRequest(3, 2, None, SamplingParams(seed=4)))
    np.testing.assert_array_equal(np.array(got["content"]), ref.tokens.content)
    assert "torch is not installed" in got["model_error"] and "dq-edge export" in got["model_error"]


def test_pipeline_on_a_model_folder_uses_torch():
    from dq_edge import Pipeline

    pipe = Pipeline.from_folder(export_helpers.tiny_model_folder(), threads=1)
    assert pipe.backend.name == "torch"
    out = pipe(num=2, seed=1, top_k=4)
    assert len(out.images) == 2 and out.codes.shape[0] == 2 and out.tokens.batch == 2
    gen = pipe.generator(2, seed=1, top_k=4)  # the step-wise surface of the same backend
    while not gen.is_done():
        gen.step()
    np.testing.assert_array_equal(gen.sequences().content, out.tokens.content)
    with pytest.raises(InputError, match="model folder"):
        Pipeline.from_folder(export_helpers.tiny_model_folder(), backend="ort-cpu")
