#!/usr/bin/env bash
# KID (and FID) of the shipped model's samples per precision, equal N, same seeds and classes.
#   bash benchmarks/weight_only_kid.sh [N] [OUT_DIR]
# Exports the shipped model (fp32, w8, w4) once, samples N images per precision with
# `dq-edge run` (ORT CPU, seed 0, classes cycled), scores each folder with `dq-edge eval gen`
# against N emoji-64 train images (Inception-2015-12-05 features; needs `dq-edge data prepare emoji64`).
set -euo pipefail
N=${1:-100}
OUT=${2:-benchmarks/results/weight_only_kid}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
uptime > "$OUT/uptime-start.txt"
python -m dq_edge export dq_edge/assets/model --out "$WORK/export" --precision fp32,w8,w4
for p in fp32 w8 w4; do
  python -m dq_edge run --engine "$WORK/export" --backend ort-cpu --precision "$p" --num "$N" --batch 8 \
    --seed 0 --classes 0,1,2,3,4,5,6,7,8,9 --out "$WORK/gen-$p" --quiet
  python -m dq_edge eval gen "$WORK/gen-$p" --data emoji64 --num "$N" --out "$OUT/kid-$p.json"
done
uptime > "$OUT/uptime-end.txt"
