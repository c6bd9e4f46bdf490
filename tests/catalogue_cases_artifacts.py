"""Bad-input catalogue, artifacts: export/engine manifests, model configs, weights files.

Every setup copies a tiny fixture (built once per pytest process) into `tmp_path` and damages
one thing, the way a hand edit, a truncated download or a hostile file would. Each case names
the command that reads the artifact; the driver (tests/test_bad_input_catalogue.py) asserts one
`error: ... (hint: ...)` line containing `expect`, the exit code, and an unchanged tree.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any, Callable

from catalogue import Case

# ----------------------------------------------------------------------------- fixtures


def _export(tmp: Path) -> Path:
    """A private fp32 copy of the tiny export (the other precisions are not needed here)."""
    import export_helpers

    source = export_helpers.tiny_export()
    folder = tmp / "export"
    folder.mkdir()
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["precisions"] = {"fp32": manifest["precisions"]["fp32"]}
    shared = manifest["precisions"]["fp32"].get("weights")  # the weights its graphs share
    for name in [g["file"] for g in manifest["precisions"]["fp32"]["graphs"].values()] + ([shared["file"]] if shared else []):
        shutil.copyfile(source / name, folder / name)
    _write(folder / "manifest.json", manifest)
    return folder


def _model(tmp: Path) -> Path:
    import export_helpers

    folder = tmp / "model"
    shutil.copytree(export_helpers.tiny_model_folder(), folder)
    return folder


def _engine(tmp: Path) -> Path:
    """An engine folder as `build-engine` writes it (placeholder plans: every case fails before
    TensorRT would read one), built from a private export copy."""
    from engines_fakes import fake_engine_folder

    from dq_edge.engines.plan import export_source

    export = _export(tmp)
    return fake_engine_folder(tmp / "engine", export_source(export, "fp32"))


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))


def _edit(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    _write(path, data)


def _set(keys: str, value: Any) -> Callable[[dict], None]:
    """`a.b.c` = value (a key path into the JSON)."""

    def change(data: dict) -> None:
        *parents, last = keys.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return change


def _drop(keys: str) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, last = keys.split(".")
        for key in parents:
            data = data[key]
        del data[last]

    return change


# ----------------------------------------------------------------------------- setups: export


def export_with(change: Callable[[dict], None]) -> Callable[[Path], dict[str, str]]:
    def setup(tmp: Path) -> dict[str, str]:
        folder = _export(tmp)
        _edit(folder / "manifest.json", change)
        return {"export": str(folder)}

    return setup


def export_manifest_bytes(data: bytes) -> Callable[[Path], dict[str, str]]:
    def setup(tmp: Path) -> dict[str, str]:
        folder = _export(tmp)
        (folder / "manifest.json").write_bytes(data)
        return {"export": str(folder)}

    return setup


def export_symlinked_graph(tmp: Path) -> dict[str, str]:
    """decoder.fp32.onnx is a symlink to a (real, matching) file outside the export folder."""
    folder = _export(tmp)
    outside = tmp / "elsewhere.onnx"
    shutil.move(str(folder / "decoder.fp32.onnx"), outside)
    (folder / "decoder.fp32.onnx").symlink_to(outside)
    return {"export": str(folder)}


def export_missing_graph(tmp: Path) -> dict[str, str]:
    folder = _export(tmp)
    (folder / "decoder.fp32.onnx").unlink()
    return {"export": str(folder)}


def export_claiming_fewer_codes(tmp: Path) -> dict[str, str]:
    """A manifest edited consistently (layout, dims and recorded IO specs all claim 32 codes)
    while the ONNX graphs still have the 64-code heads: only the graphs themselves can tell."""
    from dq_edge.graph_io import GraphDims, graph_specs
    from dq_edge.tokens import TokenLayout

    folder = _export(tmp)
    manifest = json.loads((folder / "manifest.json").read_text())
    layout = TokenLayout.from_dict({**manifest["tokens"], "n_codes": 32})
    dims = GraphDims.from_dict({**manifest["dims"], "content_vocab": layout.content_vocab})
    manifest["tokens"], manifest["dims"] = layout.to_dict(), dims.to_dict()
    specs = graph_specs(dims, "fp32", manifest["max_batch"])
    for name, graph in manifest["precisions"]["fp32"]["graphs"].items():
        graph["spec"] = specs[name].to_dict()
    _write(folder / "manifest.json", manifest)
    return {"export": str(folder)}


# ----------------------------------------------------------------------------- setups: engine


def engine_with(change: Callable[[dict], None]) -> Callable[[Path], dict[str, str]]:
    def setup(tmp: Path) -> dict[str, str]:
        folder = _engine(tmp)
        _edit(folder / "manifest.json", change)
        return {"engine": str(folder), "export": str(tmp / "export")}

    return setup


# ----------------------------------------------------------------------------- setups: model


def model_with(change: Callable[[dict], None]) -> Callable[[Path], dict[str, str]]:
    def setup(tmp: Path) -> dict[str, str]:
        folder = _model(tmp)
        _edit(folder / "config.json", change)
        return {"model": str(folder)}

    return setup


def model_config_bytes(data: bytes) -> Callable[[Path], dict[str, str]]:
    def setup(tmp: Path) -> dict[str, str]:
        folder = _model(tmp)
        (folder / "config.json").write_bytes(data)
        return {"model": str(folder)}

    return setup


def model_with_bad_value(tensor_prefix: str, value: float) -> Callable[[Path], dict[str, str]]:
    """One float tensor of the stage holds `value` (NaN or Inf) in its first element."""

    def setup(tmp: Path) -> dict[str, str]:
        from safetensors.torch import load_file, save_file

        folder = _model(tmp)
        path = folder / "model.safetensors"
        tensors = load_file(str(path))
        name = sorted(k for k in tensors if k.startswith(tensor_prefix) and tensors[k].is_floating_point())[0]
        tensors[name].view(-1)[0] = value
        save_file(tensors, str(path))
        return {"model": str(folder), "tensor": name}

    return setup


def model_truncated_weights(tmp: Path) -> dict[str, str]:
    folder = _model(tmp)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return {"model": str(folder)}


def model_absurd_header_length(tmp: Path) -> dict[str, str]:
    folder = _model(tmp)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 1 << 62) + data[8:])
    return {"model": str(folder)}


def model_of_other_widths_and_images(tmp: Path) -> dict[str, str]:
    import export_helpers

    folder = _model(tmp)
    _edit(folder / "config.json", _set("vae.ch", 64))  # valid and bounded, but not these weights
    pictures = export_helpers.write_images(tmp / "images", 2, 16)
    return {"model": str(folder), "images": str(pictures)}


# ----------------------------------------------------------------------------- the cases
NESTED = b'{"format": "dq-edge-export", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
HUGE = b"{" + b" " * (9 << 20) + b"}"  # 9 MB of whitespace: over the size bound, read never
RUN = ["run", "--backend", "ort-cpu", "--num", "1", "--threads", "1", "--out", "{tmp}/out"]
A = "artifacts"

CASES: list[Case] = [
    # --- export manifest: bytes, JSON, schema
    Case("run-manifest-not-utf8", A, RUN + ["--engine", "{export}"], "is not UTF-8 text",
         setup=export_manifest_bytes(b'{"format": "dq-edge-export\xff\xfe"}')),
    Case("bench-manifest-not-json", A, ["bench", "--engine", "{export}", "--backend", "ort-cpu", "--num", "1"],
         "is not valid JSON", setup=export_manifest_bytes(b'{"format": "dq-edge-export",')),
    Case("check-manifest-deep-nesting", A, ["check", "{export}", "--no-lint"], "nests 50001 levels deep",
         setup=export_manifest_bytes(NESTED)),
    Case("run-manifest-oversized", A, RUN + ["--engine", "{export}"], "more than the 8388608 a dq-edge JSON file may have",
         setup=export_manifest_bytes(HUGE)),
    Case("run-manifest-nan-constant", A, RUN + ["--engine", "{export}"], "NaN is not a JSON number",
         setup=export_manifest_bytes(b'{"format": "dq-edge-export", "format_version": 1, "max_batch": NaN}')),
    Case("run-manifest-duplicate-key", A, RUN + ["--engine", "{export}"], "key 'format' appears twice",
         setup=export_manifest_bytes(b'{"format": "dq-edge-export", "format": "dq-edge-engines"}')),
    Case("run-manifest-wrong-type", A, RUN + ["--engine", "{export}"], "max_batch: Input should be a valid integer",
         setup=export_with(_set("max_batch", "4"))),
    Case("build-engine-manifest-negative-size", A, ["build-engine", "{export}", "--fp32", "--dry-run"],
         "dims.image_size: Input should be greater than or equal to 1", setup=export_with(_set("dims.image_size", -16))),
    Case("bench-manifest-absurd-batch", A, ["bench", "--engine", "{export}", "--backend", "ort-cpu", "--num", "1"],
         "max_batch: Input should be less than or equal to 4096", setup=export_with(_set("max_batch", 10**12))),
    Case("run-manifest-unknown-key", A, RUN + ["--engine", "{export}"], "surprise: Extra inputs are not permitted",
         setup=export_with(_set("surprise", 1))),
    Case("check-manifest-missing-key", A, ["check", "{export}", "--no-lint"], "opset: Field required",
         setup=export_with(_drop("opset"))),
    # --- export manifest: graph files
    Case("run-graph-path-escapes", A, RUN + ["--engine", "{export}"],
         "precisions.fp32.graphs.decoder.file: '../other/decoder.fp32.onnx' is not a plain file name",
         setup=export_with(_set("precisions.fp32.graphs.decoder.file", "../other/decoder.fp32.onnx"))),
    Case("compare-graph-path-absolute", A, ["compare", "{export}", "--precision", "fp32"],
         "precisions.fp32.graphs.encoder.file: '/etc/hostname' is not a plain file name",
         setup=export_with(_set("precisions.fp32.graphs.encoder.file", "/etc/hostname"))),
    Case("run-graph-symlink-escapes", A, RUN + ["--engine", "{export}"], "points outside", setup=export_symlinked_graph),
    Case("run-graph-missing", A, RUN + ["--engine", "{export}"], "decoder.fp32.onnx is missing", setup=export_missing_graph),
    Case("check-graph-sha-not-hex", A, ["check", "{export}", "--no-lint"], "sha256: String should match pattern",
         setup=export_with(_set("precisions.fp32.graphs.dgc.sha256", "deadbeef"))),
    # --- export manifest: token layout vs vocabulary
    Case("run-layout-fewer-codes", A, RUN + ["--engine", "{export}"], "the token layout needs content_vocab=35",
         setup=export_with(_set("tokens.n_codes", 32))),
    Case("run-layout-and-dims-fewer-codes", A, RUN + ["--engine", "{export}"],
         "content_logits has size 67 on axis 1, its manifest says 35", setup=export_claiming_fewer_codes),
    Case("build-engine-layout-grid-mismatch", A, ["build-engine", "{export}", "--fp32", "--dry-run"],
         "is not twice the coarse grid", setup=export_with(_set("tokens.fine_hw", [4, 4]))),
    # --- engine manifest
    Case("run-engine-wrong-type", A, RUN[:1] + RUN[3:] + ["--engine", "{engine}"],
         "target.compute_capability: Input should be a valid list",
         setup=engine_with(_set("target.compute_capability", "8.7"))),
    Case("compare-engine-layout-mismatch", A, ["compare", "{export}", "--engine", "{engine}"],
         "the token layout needs content_vocab", setup=engine_with(_set("layout.n_codes", 8))),
    Case("compare-engine-plan-escapes", A, ["compare", "{export}", "--engine", "{engine}"],
         "engines.decoder.file: '../../x.plan' is not a plain file name",
         setup=engine_with(_set("engines.decoder.file", "../../x.plan"))),
    Case("run-engine-unknown-precision", A, RUN[:1] + RUN[3:] + ["--engine", "{engine}"],
         "precision: Input should be", setup=engine_with(_set("precision", "fp8"))),
    # --- model config.json
    Case("export-config-million-res-blocks", A, ["export", "{model}", "--out", "{tmp}/out"],
         "vae.num_res_blocks: Input should be less than or equal to 16", setup=model_with(_set("vae.num_res_blocks", 1_000_000))),
    Case("sample-config-huge-position-layers", A, ["sample", "{model}", "--out", "{tmp}/out", "--num", "1"],
         "transformer.position_layers: Input should be less than or equal to 256",
         setup=model_with(_set("transformer.position_layers", 100_000))),
    Case("reconstruct-config-not-utf8", A, ["reconstruct", "{model}", "--out", "{tmp}/out"], "is not UTF-8 text",
         setup=model_config_bytes(b'{"format": "dq-edge-model", "vae": "\xc3\x28"}')),
    Case("eval-recon-config-wrong-type", A, ["eval", "recon", "{model}", "--data", "{tmp}", "--no-fid"],
         "vae.image_size: Input should be a valid integer", setup=model_with(_set("vae.image_size", "16"))),
    Case("run-model-config-deep-nesting", A, RUN + ["--engine", "{model}"], "levels deep",
         setup=model_config_bytes(b'{"format": "dq-edge-model", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}")),
    Case("export-config-negative-codes", A, ["export", "{model}", "--out", "{tmp}/out"],
         "vae.n_codes: Input should be greater than or equal to 1", setup=model_with(_set("vae.n_codes", -64))),
    # --- model weights vs config, weights content
    Case("reconstruct-config-vs-weights-shape", A, ["reconstruct", "{model}", "{images}", "--out", "{tmp}/out"],
         "weights do not match the VAE config", setup=model_of_other_widths_and_images),
    Case("export-nan-weights", A, ["export", "{model}", "--out", "{tmp}/out"], "holds NaN or Inf values",
         setup=model_with_bad_value("vae.", float("nan"))),
    Case("sample-inf-weights", A, ["sample", "{model}", "--out", "{tmp}/out", "--num", "1"], "holds NaN or Inf values",
         setup=model_with_bad_value("transformer.", float("inf"))),
    Case("export-truncated-weights", A, ["export", "{model}", "--out", "{tmp}/out"], "is not a readable safetensors file",
         setup=model_truncated_weights),
    Case("sample-absurd-header-length", A, ["sample", "{model}", "--out", "{tmp}/out", "--num", "1"],
         "is not a readable safetensors file", setup=model_absurd_header_length),
]
