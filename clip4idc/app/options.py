"""The app's command-line options, shared by ``clip4idc app`` and ``python app.py`` (no gradio needed)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The app's options, shared by ``clip4idc app`` and ``python app.py``."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--share",
        action="store_true",
        help="open a public gradio.live tunnel (off by default; needs network)",
    )
    parser.add_argument(
        "--checkpoint",
        default="demo",
        help="model shown first: 'demo' (bundled) or a local checkpoint path (ours, the original's, OpenAI CLIP)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests computed at once; the rest wait in the queue"
    )
    parser.add_argument(
        "--max-queue", type=int, default=64, help="longest queue before new requests are refused"
    )
    parser.add_argument("--max-file-size", default="20mb", help="largest accepted upload (default 20mb)")
