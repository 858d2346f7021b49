#!/usr/bin/env bash
# Set up a fresh machine and run the whole test suite (what CI runs via .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh test
ruff check .
ruff format --check clip4idc tests data_prep benchmarks notebooks app.py
python -m pytest -q --timeout=900 "$@"
