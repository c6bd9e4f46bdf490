"""`dq-edge encode MODEL IMAGES... --out DIR`: images -> .dqt files (entropy-coded DQ tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dq_edge.cli.output_claim import Overwrite, claim_cli_output


def _table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for col in ("image", "bytes", "bpp", "payload bpp", "codes", "fine %", "vs fixed", "s"):
        table.add_column(col, justify="left" if col == "image" else "right")
    for r in rows:
        table.add_row(
            r["name"], str(r["bytes"]), f"{r['bpp']:.3f}", f"{r['payload_bpp']:.3f}", str(r["codes"]),
            f"{100 * r['fine_ratio']:.1f}", f"{r['payload_vs_fixed_bound']:.3f}", f"{r['seconds']:.2f}",
        )
    return table


def register(app: typer.Typer) -> None:
    @app.command("encode")
    def encode(
        model: Path = typer.Argument(..., help="Model folder (torch backend) or export folder (ONNX Runtime)."),
        images: List[Path] = typer.Argument(..., help="Image files or folders of PNG/JPEG files."),
        out: Path = typer.Option(..., "--out", help="Output folder: NAME.dqt per image and summary.json."),
        backend: str = typer.Option("auto", "--backend", help="auto | torch | ort-cpu | ort-cuda | ort-trt"),
        precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | fp16 | int8 (export folders; default fp32)."),
        cls: Optional[int] = typer.Option(None, "--class", help="Class of every image (class-conditional models; default 0)."),
        no_model: bool = typer.Option(False, "--no-model", help="Fixed-length packing of the same tokens (the baseline) instead of entropy coding."),
        resize: bool = typer.Option(False, "--resize", help="Center-crop and resize images to the model's size instead of failing."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads."),
        overwrite: Overwrite = False,
    ) -> None:
        """Compress images into .dqt files: the DQ-VAE's tokens, range-coded with the DQ-Transformer's probabilities."""
        from rich.console import Console

        from dq_edge.codec.files import expand
        from dq_edge.reconstruct import IMAGE_SUFFIXES  # torch-free module

        paths = expand(list(images), IMAGE_SUFFIXES, "image")
        with claim_cli_output(out, "encode", [model, *paths], overwrite) as claim:
            summary = _encode_into(claim, model, paths, backend, precision, threads, resize, cls, no_model)

        coder = "fixed-length" if no_model else "entropy-coded"
        Console().print(_table(summary["images"], f"{coder}, {summary['backend']} {summary['precision']}"))
        typer.echo(
            f"wrote {len(summary['images'])} .dqt files to {out}: mean {summary['mean_bpp']:.3f} bpp "
            f"(payload {summary['mean_payload_bpp']:.3f}, fixed-length bound {summary['mean_fixed_bound_bpp']:.3f})"
        )


def _encode_into(claim, model, paths, backend, precision, threads, resize, cls, no_model) -> dict:
    """Encode `paths` into the claimed folder (NAME.dqt each + summary.json); returns the summary."""
    from dq_edge.atomic import write_json
    from dq_edge.codec import encode_images, open_model
    from dq_edge.reconstruct import load_images  # torch-free module

    codec = open_model(model, backend, precision, threads)
    pixels = load_images(paths, codec.image_size, resize)
    encoded = encode_images(codec, pixels, None if cls is None else [cls] * len(paths), use_model=not no_model)
    rows = []
    for path, e in zip(paths, encoded):
        rows.append({
            "name": path.stem, "file": f"{path.stem}.dqt", "bytes": len(e.data), "bpp": e.bpp,
            "payload_bpp": e.payload_bpp, "ideal_bpp": e.ideal_bits / e.pixels, "codes": e.n_codes,
            "fine_ratio": e.fine_ratio, "fixed_bound_bpp": e.fixed_bound_bits / e.pixels,
            "payload_vs_fixed_bound": e.payload_bits / e.fixed_bound_bits, "seconds": e.seconds, "class": e.cls,
        })
    summary = {
        "model": str(model), "fingerprint": codec.fingerprint, "backend": codec.backend_name,
        "precision": codec.precision, "coder": "fixed" if no_model else "model", "images": rows,
        "mean_bpp": sum(r["bpp"] for r in rows) / len(rows),
        "mean_payload_bpp": sum(r["payload_bpp"] for r in rows) / len(rows),
        "mean_fixed_bound_bpp": sum(r["fixed_bound_bpp"] for r in rows) / len(rows),
    }
    with claim.staging() as tmp:
        for path, e in zip(paths, encoded):
            (tmp / f"{path.stem}.dqt").write_bytes(e.data)
        write_json(tmp / "summary.json", summary)
    return summary
