"""Regenerate the fp32 export shipped with the package (dq_edge/assets/default_export/).

`dq-edge run` without `--engine` opens that folder directly, so a torch-free install can
generate images. Its manifest records the shipped model's sha256 and the graph IO of the
dq-edge that wrote it; rerun this (`bash scripts/refresh_default_export.sh`, or
`python -m dq_edge.export.default_export`) after anything that changes the exported graphs: the
shipped model, FORMAT_VERSION, the graph IO in dq_edge/graph_io.py, or the exporter.
tests/test_shipped_export.py fails, naming this command, while the shipped copy is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dq_edge.export.manifest import write_manifest
from dq_edge.export.pipeline import ExportRequest, ExportResult, export_model
from dq_edge.runtime.default_model import DEFAULT_MAX_BATCH, SHIPPED_EXPORT, SHIPPED_MODEL

REFRESH_COMMAND = "bash scripts/refresh_default_export.sh"
SHIPPED_MODEL_PATH = "dq_edge/assets/model"  # recorded instead of this machine's absolute path


def refresh(out: Path = SHIPPED_EXPORT, say=print) -> ExportResult:
    """Export the shipped model (fp32, the first-use export's max batch) into `out`, replacing it."""
    request = ExportRequest(model=SHIPPED_MODEL, out=Path(out), precisions=["fp32"], max_batch=DEFAULT_MAX_BATCH, force=True)
    result = export_model(request, say)
    result.manifest["source"]["model_path"] = SHIPPED_MODEL_PATH  # the same bytes on every machine
    write_manifest(result.out, result.manifest)
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else SHIPPED_EXPORT
    result = refresh(out)
    size = sum(p.stat().st_size for p in result.out.iterdir() if p.is_file())
    print(f"{result.out}: {size / 1e6:.1f} MB in {result.seconds:.1f} s (source sha256 {result.manifest['source']['model_hash'][:16]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
