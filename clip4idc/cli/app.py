"""``clip4idc demo``: launch the Gradio app (the same as ``python app.py``).

Gradio is imported only when the command runs, so ``clip4idc --help`` stays fast and works without it.
"""

from __future__ import annotations

import argparse

from ..errors import Clip4idcError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The app's options, shared by ``clip4idc demo`` and ``python app.py``."""
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


def run(args: argparse.Namespace) -> int:
    """Start the server and block until interrupted."""
    try:
        from ..app import web as app
    except ImportError as err:
        raise Clip4idcError(
            f"the app needs gradio ({err}); install it with: pip install 'clip4idc[app]'"
        ) from None
    return app.serve_from_args(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="launch the web app (caption, attention maps, retrieval)", description=__doc__
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
