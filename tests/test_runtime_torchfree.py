"""The runtime works where torch cannot be imported: `dq-edge run` in a subprocess whose import
system raises on `torch`, on the tiny export (fp32, fp16 and int8), and its tokens equal the
in-process runtime's tokens for the same seed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import export_helpers

BLOCK_TORCH = textwrap.dedent(
    """
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked: the runtime must not import it")
            return None

    sys.meta_path.insert(0, BlockTorch())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the torch blocker does not work")
    from dq_edge.cli.main import main
    code = main(sys.argv[1:])
    leaked = [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
    print("TORCH_MODULES", leaked, file=sys.stderr)
    raise SystemExit(code or (3 if leaked else 0))
    """
)


def run_without_torch(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, *args], capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_run_without_torch(tmp_path, precision):
    export = export_helpers.tiny_export()
    out = tmp_path / "out"
    args = ["run", "--engine", str(export), "--backend", "ort-cpu", "--precision", precision,
            "--num", "3", "--batch", "2", "--seed", "4", "--threads", "1", "--out", str(out), "--quiet"]
    proc = run_without_torch(args)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_MODULES []" in proc.stderr
    names = sorted(p.name for p in out.iterdir() if p.name != ".dq-edge-output")
    assert (out / ".dq-edge-output").is_file()  # the marker that lets --overwrite replace it later
    assert names == ["grid.png", "image_0000.png", "image_0001.png", "image_0002.png", "summary.json", "tokens.npz"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "ort-cpu" and summary["precision"] == precision and summary["images"] == 3
    assert summary["stages"]["position_step"]["calls"] > 0 and summary["stages"]["decoder"]["calls"] == 2
    assert 0.0 <= summary["mean_fine_ratio"] <= 1.0
    assert summary["sampling"]["seed"] == 4
    assert summary["command"] == f"dq-edge run --out {out} --engine {export} --backend ort-cpu --precision {precision} --num 3 --batch 2 --threads 1 --quiet --seed 4"  # sampling flags come last

    # the same tokens as the runtime in this process (which may have torch loaded)
    from dq_edge.runtime.pipeline import RunRequest, generate_images
    from dq_edge.runtime.session import open_runtime
    from dq_edge.generation import SamplingParams

    opened = open_runtime(export, "ort-cpu", precision, threads=1)
    ref = generate_images(opened.backend, opened.layout, RunRequest(3, 2, None, SamplingParams(seed=4)))
    tokens = np.load(out / "tokens.npz")
    np.testing.assert_array_equal(tokens["content"], ref.tokens.content)
    np.testing.assert_array_equal(tokens["lengths"], ref.tokens.lengths)
    assert summary["tokens_per_image"] == (ref.tokens.lengths - 4).tolist()
