#!/usr/bin/env bash
# Set up a fresh machine and open the lessons: Jupyter Lab on notebooks/ (extra arguments go to jupyter lab).
# The executed copies (NN_*.ipynb) open with their outputs; rerun any cell, or rebuild all five from their
# sources with: python notebooks/build_notebooks.py
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh notebooks
exec jupyter lab notebooks/ "$@"
