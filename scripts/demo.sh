#!/usr/bin/env bash
# Set up a fresh machine and run the demo: caption the bundled example pairs with the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
python -m clip4idc.cli.examples "$@"
