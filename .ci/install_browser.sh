#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its driver for the browser test (tests/test_app_browser.py).
# Idempotent: does nothing when both are already installed. Never runs `playwright install` (that downloads
# browsers from the internet); Playwright drives /usr/bin/chromium through `executable_path`.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver already installed: $(chromium --version 2>/dev/null | head -n1)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends chromium chromium-driver; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends chromium chromium-driver
fi
chromium --version | head -n1
