"""``clip4idc app`` (alias ``demo``): launch the Gradio app (the same as ``python app.py``).

Gradio is imported only when the command runs, so ``clip4idc --help`` stays fast and works without it.
"""

from __future__ import annotations

import argparse

from ..app.options import add_arguments
from ..errors import Clip4idcError


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
        "app",
        aliases=["demo"],
        help="launch the web app (caption, attention maps, retrieval)",
        description=__doc__,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
