"""A model folder is checked before anything is allocated for it: config sizes are bounded,
the module is compared with the safetensors header on the meta device, and NaN/Inf weights
are refused with the tensor's name."""

import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import export_helpers
from dq_edge.errors import CheckpointError, ConfigError
from dq_edge.models.transformer import load_transformer
from dq_edge.models.vae import load_vae
from dq_edge.models.weights import meta_shapes, weights_header


@pytest.fixture
def model(tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(export_helpers.tiny_model_folder(), folder)
    return folder


def _edit_config(folder: Path, section: str, **values) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg[section].update(values)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_header_shapes_equal_the_module_built_on_meta(model):
    """The comparison is meaningful: the real folder's header equals the meta module exactly."""
    from dq_edge.models.vae import DQVAE
    from dq_edge.models.vae_config import VAEConfig

    cfg = VAEConfig.from_dict(json.loads((model / "config.json").read_text())["vae"])
    header = {k[len("vae."):]: v for k, v in weights_header(model).items() if k.startswith("vae.")}
    shapes = meta_shapes(lambda: DQVAE(cfg))
    assert shapes == header and len(shapes) > 50
    assert load_vae(model).config == cfg


@pytest.mark.parametrize(
    "section, values, message",
    [
        ("vae", {"num_res_blocks": 1_000_000}, "vae.num_res_blocks: Input should be less than or equal to 16"),
        ("transformer", {"position_layers": 100_000}, "transformer.position_layers: Input should be less than or equal to 256"),
        ("vae", {"ch": 4096, "ch_mult": [1, 64, 64]}, "the widest layer has 262144 channels"),
        ("transformer", {"width": -8}, "transformer.width: Input should be greater than or equal to 1"),
        ("vae", {"dropout": float("nan")}, "NaN is not a JSON number"),
    ],
)
def test_absurd_config_sizes_fail_before_any_module_is_built(model, monkeypatch, section, values, message):
    built = []
    monkeypatch.setattr(torch.nn.Module, "__init__", lambda self, *a, **k: built.append(self))
    _edit_config(model, section, **values)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=message):
        (load_vae if section == "vae" else load_transformer)(model)
    assert built == [] and time.perf_counter() - start < 5.0


def test_config_within_bounds_but_not_the_weights_fails_without_allocating(model):
    """A config for a ~10 GB VAE (every size inside the bounds) beside the tiny weights: the
    shapes are compared on the meta device, so the error comes in seconds with little memory
    (run in a child process to measure its peak RSS)."""
    _edit_config(
        model, "vae", ch=4096, dec_ch=8192, z_channels=8192, embed_dim=8192, n_codes=200_000,
        num_res_blocks=4, dec_num_res_blocks=4,
    )
    script = (
        "import resource, sys\n"
        "from dq_edge.errors import CheckpointError\n"
        "from dq_edge.models.vae import load_vae\n"
        "try:\n"
        f"    load_vae({str(model)!r})\n"
        "except CheckpointError as exc:\n"
        "    print(exc.message[:200])\n"
        "print('peak_mb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True).stdout
    seconds = time.perf_counter() - start
    assert "weights do not match the VAE config" in out, out
    peak_mb = int(out.rsplit("peak_mb", 1)[1])
    assert peak_mb < 1500, f"peak RSS {peak_mb} MB: the module was materialised"  # torch itself: ~300-500 MB
    assert seconds < 120, seconds  # import torch + a meta build, on a loaded 2-core machine


def test_weights_of_another_stage_layout_are_named(model):
    tensors = load_file(str(model / "model.safetensors"))
    name = "transformer.content_emb.weight"
    tensors[name] = torch.zeros(3, 3)
    tensors["transformer.extra.weight"] = torch.zeros(1)
    save_file(tensors, str(model / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"unknown: extra.weight; wrong shape: {name[len('transformer.'):]} .*is \(3, 3\)"):
        load_transformer(model)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("stage", ["vae", "transformer"])
def test_non_finite_weights_are_refused_with_the_tensor_name(model, stage, value):
    tensors = load_file(str(model / "model.safetensors"))
    name = sorted(k for k in tensors if k.startswith(stage + ".") and tensors[k].is_floating_point())[-1]
    tensors[name].view(-1)[-1] = value
    save_file(tensors, str(model / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"tensor {name} holds NaN or Inf values"):
        (load_vae if stage == "vae" else load_transformer)(model)


def test_export_refuses_nan_weights_naming_the_tensor(model, tmp_path):
    from dq_edge.export.pipeline import ExportRequest, export_model

    tensors = load_file(str(model / "model.safetensors"))
    tensors["vae.quantize.codebook.weight"][5, 3] = float("nan")  # one code of the codebook
    save_file(tensors, str(model / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"tensor vae\.quantize\.codebook\.weight holds NaN or Inf values"):
        export_model(ExportRequest(model=model, out=tmp_path / "export", precisions=["fp32"], max_batch=2))
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[: len(data) // 2], "incomplete metadata"),
        (lambda data: struct.pack("<Q", 1 << 62) + data[8:], "header too large"),
        (lambda data: struct.pack("<Q", 10) + b"{not json}" + data[18:], "Error while deserializing header"),
        (lambda data: data[:5], "not a readable safetensors file"),
    ],
)
def test_damaged_safetensors_headers_are_typed_errors(model, damage, message):
    path = model / "model.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        load_vae(model)


def test_missing_weights_file(model):
    (model / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_vae(model)

