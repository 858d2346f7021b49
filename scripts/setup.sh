#!/usr/bin/env bash
# Create .venv and install clip4idc with the given extras (sourced by test.sh and demo.sh).
# torch is pinned to the CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${CLIP4IDC_TORCH_VERSION:-2.13.0}"
if [ -n "$extras" ]; then
  python -m pip install -q -e ".[$extras]"
else
  python -m pip install -q -e .
fi
if [ "$extras" = "test" ] && [ -x .ci/install_browser.sh ]; then
  bash .ci/install_browser.sh
fi
