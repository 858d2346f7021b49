"""Drive the app in headless Chromium: upload a pair, click, read the caption; optionally save a screenshot.

Why here: the README screenshot (``docs/images/app.png``) and the real-browser test
(``tests/test_app_browser.py``) run the same steps, so the picture shows what the test checks. Uses Debian's
``/usr/bin/chromium`` through Playwright's ``executable_path`` (never ``playwright install``, which downloads
browsers), with networking features off so the page can be checked for requests leaving the machine.

    python data_prep/screenshot_app.py                    # → docs/images/app.png (example pair "move")
    python data_prep/screenshot_app.py --out /tmp/a.png --example color
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
LOCAL_PREFIXES = ("http://127.0.0.1", "http://localhost", "data:", "blob:", "about:")


def find_chromium() -> str:
    """Debian's Chromium, or a clear error saying how to install it."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    found = shutil.which("chromium")
    if found:
        return found
    raise FileNotFoundError(
        "Chromium not found at /usr/bin/chromium: install it with `bash .ci/install_browser.sh` "
        "(apt-get install chromium chromium-driver); `playwright install` is not used"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_browser(playwright: Any, user_data_dir: str, width: int = 1280, height: int = 900) -> Any:
    """A fresh persistent Chromium context (its own ``--user-data-dir``) with the offline flags."""
    return playwright.chromium.launch_persistent_context(
        user_data_dir,
        executable_path=find_chromium(),
        headless=True,
        args=BROWSER_ARGS,
        viewport={"width": width, "height": height},
    )


def describe_in_browser(page: Any, url: str, before: str, after: str, timeout_ms: int = 60_000) -> dict:
    """Open the app, upload both images, click "Describe", wait for the caption and the attention images.

    Returns the caption, the number of word-map and encoder-map images, the status text and every request
    the page made to a host other than this machine."""
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith(LOCAL_PREFIXES) else None)
    page.goto(url, wait_until="load", timeout=timeout_ms)
    page.wait_for_selector("#run", timeout=timeout_ms)
    page.locator("#before input[type=file]").set_input_files(before)
    page.locator("#after input[type=file]").set_input_files(after)
    page.wait_for_selector("#before img", timeout=timeout_ms)
    page.wait_for_selector("#after img", timeout=timeout_ms)
    page.click("#run")
    page.wait_for_function(
        "() => (document.querySelector('#caption textarea') || {}).value", timeout=timeout_ms, polling=200
    )
    page.wait_for_selector("#word-maps img", timeout=timeout_ms)
    page.wait_for_selector("#encoder-maps img", timeout=timeout_ms)
    page.wait_for_timeout(300)  # let the galleries finish laying out
    return {
        "caption": page.locator("#caption textarea").input_value(),
        "word_images": page.locator("#word-maps img").count(),
        "encoder_images": page.locator("#encoder-maps img").count(),
        "status": page.locator("#status").inner_text(),
        "external_requests": external,
    }


def screenshot(out: Path, example: str = "move", checkpoint: str = "demo") -> dict:
    """Serve the app on a free local port, run one pair in the browser and save a full-page PNG."""
    from playwright.sync_api import sync_playwright

    from clip4idc.app.web import EXAMPLES_DIR, serve

    demo, url = serve([checkpoint], port=free_port(), block=False, quiet=True)
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            ctx = open_browser(pw, profile)
            page = ctx.new_page()
            before, after = (str(EXAMPLES_DIR / f"{example}_{k}.png") for k in ("before", "after"))
            result = describe_in_browser(page, url, before, after)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            ctx.close()
    finally:
        demo.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "app.png")
    parser.add_argument("--example", default="move", help="bundled example pair (color, material, add, …)")
    parser.add_argument("--checkpoint", default="demo")
    args = parser.parse_args(argv)
    result = screenshot(args.out, args.example, args.checkpoint)
    print(f"caption: {result['caption']!r}; {result['word_images']} word maps; screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
