"""The app's command-line options, shared by ``clip4idc app`` and ``python app.py`` (no gradio needed)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The app's options, shared by ``clip4idc app`` and ``python app.py``."""
    parser.add_argument(
        "--host", default=None, help="interface to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT, else 7860)"
    )
    parser.add_argument(
        "--share",
        action="store_true",
        help="open a public gradio.live tunnel (off by default; needs network)",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        metavar="PATH",
        help="a checkpoint to offer besides the bundled model (ours, the original's, OpenAI CLIP); repeat "
        "it for several, or give a folder of them. Visitors choose only among these.",
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests computed at once; the rest wait in the queue"
    )
    parser.add_argument(
        "--max-queue", type=int, default=64, help="longest queue before new requests are refused"
    )
    parser.add_argument("--max-file-size", default="20mb", help="largest accepted upload (default 20mb)")
