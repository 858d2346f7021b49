#!/usr/bin/env bash
# Create .venv and install clip4idc with the given extras (sourced by test.sh and demo.sh).
# One line per step; pip's and apt's output goes to .venv/setup.log and is shown only if a step fails.
# A second run is fast: the venv, torch (if it imports), the editable install (if pyproject.toml and the
# extras are unchanged since the last install) and Chromium are each kept when already there.
# torch is pinned to the CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
extras="${1:-}"
torch_version="${CLIP4IDC_TORCH_VERSION:-2.13.0}"
mkdir -p .venv
setup_log=.venv/setup.log
: >"$setup_log"

# setup_step MESSAGE COMMAND...: print MESSAGE, run COMMAND with its output in the log; on failure print
# that output and stop.
setup_step() {
  local message="$1" start
  shift
  echo "$message"
  start=$(($(wc -l <"$setup_log") + 1))
  echo "== $message: $*" >>"$setup_log"
  if ! "$@" >>"$setup_log" 2>&1; then
    echo "setup failed while ${message}; its output (full log: $setup_log):" >&2
    tail -n "+$start" "$setup_log" | tail -n 60 >&2
    return 1
  fi
}

if [ -x .venv/bin/python ]; then
  echo "using .venv"
else
  setup_step "creating .venv" python3 -m venv .venv
  setup_step "updating pip" .venv/bin/python -m pip install --upgrade pip
fi
# shellcheck disable=SC1091
source .venv/bin/activate

if installed_torch=$(python -c "import torch; print(torch.__version__)" 2>/dev/null); then
  echo "torch ${installed_torch} already installed"
else
  setup_step "installing torch ${torch_version} (CPU)" python -m pip install "torch==${torch_version}"
fi

package="clip4idc${extras:+[$extras]}"
wanted=$(python -c "import hashlib; print(hashlib.sha256(open('pyproject.toml', 'rb').read()).hexdigest())")
stamp=".venv/.installed-${extras:-base}"
current=""
if python -c "import importlib.metadata as m; m.version('clip4idc')" 2>/dev/null; then
  # any install with extras includes the base package
  for file in "$stamp" .venv/.installed-*; do
    if [ -f "$file" ] && { [ "$file" = "$stamp" ] || [ -z "$extras" ]; } && [ "$(cat "$file")" = "$wanted" ]; then
      current=yes
    fi
  done
fi
if [ -n "$current" ]; then
  echo "${package} already installed (pyproject.toml unchanged)"
else
  setup_step "installing ${package}" python -m pip install -e ".${extras:+[$extras]}"
  echo "$wanted" >"$stamp"
fi

if [ "$extras" = "test" ] && [ -x .ci/install_browser.sh ]; then
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "Chromium already installed"
  else
    setup_step "installing Chromium for the browser test" bash .ci/install_browser.sh
  fi
fi
echo "ready"
