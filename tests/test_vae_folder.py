"""Model folder round trip for the DQ-VAE: strict load, thresholds, public API names."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dq_edge.errors import CheckpointError, ConfigError
from dq_edge.models import build_vae, load_vae, save_vae
from dq_edge.models.folder import read_config
from torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)


def _x(n=2):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 2 - 1


def test_round_trip_feature(tmp_path):
    vae = build_vae("tiny", seed=3).eval()
    save_vae(vae, tmp_path / "m", extra_config={"data": {"name": "unit-test"}})
    cfg = read_config(tmp_path / "m")
    assert cfg["vae"]["router"] == "feature" and cfg["data"] == {"name": "unit-test"}
    assert cfg["tokens"]["n_codes"] == 64 and cfg["format_version"] >= 1
    back = load_vae(tmp_path / "m")
    assert not back.training and back.quantize.codebook.weight.dtype == torch.float32
    x = _x()
    a, b = vae.encode(x), back.encode(x)
    assert torch.equal(a.grain, b.grain) and torch.equal(a.codes, b.codes)
    assert torch.equal(vae.decode_codes(a.codes), back.decode_codes(b.codes))
    for k, v in vae.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


def test_round_trip_entropy_keeps_thresholds(tmp_path):
    table = {str(p): 0.02 * p for p in range(1, 100)}
    vae = build_vae("tiny-entropy", thresholds=table, seed=1).eval()
    save_vae(vae, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "thresholds.json").read_text()) == table
    back = load_vae(tmp_path / "m")
    assert back.router.threshold == table["50"]
    x = _x()
    assert torch.equal(vae.encode(x).codes, back.encode(x).codes)
    with pytest.raises(CheckpointError, match="without thresholds"):
        save_vae(build_vae("tiny-entropy"), tmp_path / "n")


@pytest.mark.parametrize("change", ["extra", "missing", "shape"])
def test_strict_load_rejects_foreign_tensors(tmp_path, change):
    save_vae(build_vae("tiny", seed=0), tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    tensors = load_file(str(path))
    if change == "extra":
        tensors["vae.encoder.bonus.weight"] = torch.zeros(2)
    elif change == "missing":
        del tensors["vae.decoder.conv_out.bias"]
    else:
        tensors["vae.quant_conv.weight"] = torch.zeros(3, 3, 1, 1)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match={"extra": "unknown", "missing": "missing", "shape": "wrong shape"}[change]):
        load_vae(tmp_path / "m")


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a dq-edge model folder"):
        load_vae(tmp_path)
    save_vae(build_vae("tiny-entropy", thresholds={"50": 1.0}), tmp_path / "e")
    (tmp_path / "e" / "thresholds.json").unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        load_vae(tmp_path / "e")
