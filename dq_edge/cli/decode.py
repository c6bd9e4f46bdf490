"""`dq-edge decode MODEL FILES... --out DIR`: .dqt files -> PNG images."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dq_edge.cli.output_claim import Overwrite, claim_cli_output


def _recorded_coding(paths: list[Path]) -> tuple[str, str] | None:
    """(backend, precision) an entropy-coded input records, to open the model on it by default."""
    from dq_edge.codec.container import CODER_MODEL, DqtFormatError, peek_coding

    for path in paths:
        try:
            with open(path, "rb") as fh:
                coder, backend, precision = peek_coding(fh.read(64))
        except (OSError, DqtFormatError):
            continue  # reported with the file's name when it is decoded
        if coder == CODER_MODEL:
            return backend, precision
    return None


def register(app: typer.Typer) -> None:
    @app.command("decode")
    def decode(
        model: Path = typer.Argument(..., help="The model folder or export folder that encoded the files."),
        files: List[Path] = typer.Argument(..., help=".dqt files or folders of them."),
        out: Path = typer.Option(..., "--out", help="Output folder: NAME.png per file."),
        backend: str = typer.Option("auto", "--backend", help="auto (the backend the files record) | torch | ort-cpu | ort-cuda | ort-trt"),
        precision: Optional[str] = typer.Option(None, "--precision", help="Default: the precision the files record."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads."),
        overwrite: Overwrite = False,
    ) -> None:
        """Decompress .dqt files into PNG images (exactly the reconstruction of the encoded image)."""
        from dq_edge.codec.files import DQT_SUFFIX, expand

        paths = expand(list(files), (DQT_SUFFIX,), ".dqt")
        with claim_cli_output(out, "decode", [model, *paths], overwrite) as claim:
            _decode_into(claim, model, paths, backend, precision, threads)


def _decode_into(claim, model: Path, paths: list, backend: str, precision, threads) -> None:
    """Decode `paths` into the claimed folder (NAME.png each)."""
    from dq_edge.codec import decode_files, open_model
    from dq_edge.codec.files import read_dqt
    from dq_edge.errors import DQEdgeError
    from dq_edge.runtime.images import save_png

    recorded = _recorded_coding(paths)
    if recorded is not None and (model / "manifest.json").is_file():
        backend = recorded[0] if backend == "auto" else backend
        precision = precision or recorded[1]
    codec = open_model(model, backend, precision, threads)
    blobs = []
    for path in paths:
        try:
            blobs.append(read_dqt(path, codec.limits))
        except DQEdgeError as exc:
            raise type(exc)(f"{path}: {exc.message}", exc.hint) from exc
    images = decode_files(codec, blobs, names=[str(p) for p in paths])
    with claim.staging() as tmp:
        for path, image in zip(paths, images):
            save_png(tmp / f"{path.stem}.png", image)
    typer.echo(f"decoded {len(paths)} files with {codec.backend_name} {codec.precision} into {claim.path}")
