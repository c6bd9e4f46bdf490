#!/usr/bin/env bash
# Quickstart: set up, find the shipped model's ONNX export (shipped in the package; otherwise exported
# once and cached), generate a grid of images
# on the best available backend, and say where the images are and how long each stage took.
#
#   bash scripts/quickstart.sh                 # 16 images into outputs/quickstart/
#   NUM=64 OUT=/tmp/grid bash scripts/quickstart.sh
#   DQ_EDGE_ENGINE=path/to/export bash scripts/quickstart.sh   # any export/engine folder instead
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-outputs/quickstart}"
NUM="${NUM:-16}"
SEED="${SEED:-0}"
total_start=$SECONDS

echo "== 1/3 setup (.venv, dq-edge and its dependencies)"
phase_start=$SECONDS
bash scripts/setup.sh
. .venv/bin/activate
setup_s=$((SECONDS - phase_start))

echo "== 2/3 the shipped model's ONNX export (shipped in the package, else exported once and cached)"
phase_start=$SECONDS
engine_args=()
if [ -n "${DQ_EDGE_ENGINE:-}" ]; then
  engine_args=(--engine "$DQ_EDGE_ENGINE")
  echo "using $DQ_EDGE_ENGINE"
else
  python - <<'PY'
from dq_edge.cli.first_use_export import ensure_default_export

folder, exported = ensure_default_export("fp32")
print(("exported to " if exported else "using ") + str(folder))
PY
fi
export_s=$((SECONDS - phase_start))

echo "== 3/3 generate $NUM images (backend: auto)"
phase_start=$SECONDS
dq-edge run "${engine_args[@]}" --backend auto --num "$NUM" --seed "$SEED" --out "$OUT" --overwrite
run_s=$((SECONDS - phase_start))

echo
echo "images:   $OUT/image_*.png"
echo "grid:     $OUT/grid.png"
echo "details:  $OUT/summary.json (per-stage times, tokens per image, fine ratio, backend, versions)"
echo "wall time: setup ${setup_s}s, export ${export_s}s, generate ${run_s}s, total $((SECONDS - total_start))s"
