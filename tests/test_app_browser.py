"""A real browser: headless Debian Chromium (via Playwright) uploads two images, clicks, reads the caption.

Never skipped: without Chromium or Playwright the test fails and says how to install them.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _helper():
    spec = importlib.util.spec_from_file_location("screenshot_app", REPO / "data_prep" / "screenshot_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_browser_uploads_pair_and_reads_caption_and_attention() -> None:
    helper = _helper()
    try:
        helper.find_chromium()
    except FileNotFoundError as err:
        pytest.fail(str(err))
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the Python package 'playwright' is missing: pip install playwright (no browser download)"
        )

    from clip4idc.app.web import EXAMPLES_DIR, serve

    demo, url = serve(port=helper.free_port(), block=False, quiet=True)
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            ctx = helper.open_browser(pw, profile)
            try:
                page = ctx.new_page()
                result = helper.describe_in_browser(
                    page, url, str(EXAMPLES_DIR / "add_before.png"), str(EXAMPLES_DIR / "add_after.png")
                )
            finally:
                ctx.close()
    finally:
        demo.close()
    assert result["caption"].strip()
    assert result["word_images"] >= 1 and result["encoder_images"] >= 1
    assert "computed in" in result["status"]
    assert result["external_requests"] == [], (
        f"the page reached outside this machine: {result['external_requests']}"
    )
