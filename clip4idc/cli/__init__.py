"""The ``clip4idc`` command line: one entry point, one subcommand module per concern.

Each module in ``_COMMAND_MODULES`` exposes ``register(subparsers)`` which adds its subcommands and sets
``func`` on them. Modules are imported only when present so partial installs still work.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import Clip4idcError

_COMMAND_MODULES = [
    "clip4idc.cli.caption",
    "clip4idc.cli.examples",
    "clip4idc.cli.data",
    "clip4idc.cli.score",
    "clip4idc.cli.train",
    "clip4idc.cli.evaluate",
    "clip4idc.cli.app",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clip4idc", description="Image difference captioning with CLIP4IDC."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name or (err.name and name.startswith(err.name)):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may sit on either side of a flag (``train epochs=6 --resume lr=1e-4``); argparse
    # takes only the first run of positionals, so the rest come back as unknown and join the overrides.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if not hasattr(args, "overrides") or any(u.startswith("-") or "=" not in u for u in unknown):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.overrides = list(args.overrides or []) + unknown
    try:
        result = args.func(args)
    except Clip4idcError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
