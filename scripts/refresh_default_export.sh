#!/usr/bin/env bash
# Regenerate the fp32 ONNX export shipped with the package (dq_edge/assets/default_export/), which
# `dq-edge run` without --engine opens directly (no torch needed). Run it after changing the
# shipped model, FORMAT_VERSION, the graph IO (dq_edge/graph_io.py) or the exporter, and commit
# the folder; tests/test_shipped_export.py fails while the shipped copy is stale. Needs torch + onnx
# (the `export` extra). Usage: bash scripts/refresh_default_export.sh [OUT_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python -m dq_edge.export.default_export "$@"
