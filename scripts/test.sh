#!/usr/bin/env bash
# Set up (idempotent) and run the test suite. GPU tests skip here with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q -p no:cacheprovider "$@"
