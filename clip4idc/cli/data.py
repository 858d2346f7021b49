"""``clip4idc data check`` and ``clip4idc data synth``."""

from __future__ import annotations

import argparse
import os
import re
import sys

from ..data.synthetic.writer import DEFAULT_SIZE
from ..errors import Clip4idcError
from ..io import check_writable_folder


def parse_size(text: str) -> tuple[int, int]:
    """``"320x240"`` → ``(320, 240)``."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="check datasets, generate synthetic CLEVR-Change")
    sub = data.add_subparsers(dest="data_command", required=True)

    check = sub.add_parser("check", help="validate a dataset folder and print a summary")
    check.add_argument("path", help="dataset root folder")
    check.add_argument("--dataset", required=True, choices=["clevr", "spot", "ier"])
    check.add_argument("--no-verify", action="store_true", help="only check that images exist (faster)")
    check.set_defaults(func=run_check)

    synth = sub.add_parser("synth", help="generate a synthetic CLEVR-Change dataset")
    synth.add_argument("out", help="output folder")
    synth.add_argument("--pairs", type=int, default=1000, help="number of scenes (default 1000)")
    synth.add_argument(
        "--size",
        type=parse_size,
        default=DEFAULT_SIZE,
        help=f"WxH (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}: what the bundled models saw)",
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    synth.add_argument("--val-frac", type=float, default=0.1)
    synth.add_argument("--test-frac", type=float, default=0.1)
    synth.add_argument("--no-progress", action="store_true")
    synth.set_defaults(func=run_synth)


def run_check(args: argparse.Namespace) -> int:
    from ..data.check import check_dataset

    report = check_dataset(args.path, args.dataset, verify_images=not args.no_verify)
    print(report.summary())
    for line in report.problems:
        print(line)
    return 0 if report.ok else 1


def run_synth(args: argparse.Namespace) -> int:
    from ..data.synthetic import generate

    if args.workers < 1:
        raise Clip4idcError("--workers must be at least 1")
    check_writable_folder(args.out)
    w, h = args.size
    stats = generate(
        args.out,
        args.pairs,
        (w, h),
        seed=args.seed,
        workers=args.workers,
        val_frac=args.val_frac,
        test_frac=args.test_frac,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    print(
        f"wrote {stats['pairs']} pairs ({w}x{h}) to {args.out} in {stats['seconds']:.1f} s: "
        f"{stats['pairs_per_second']:.1f} pairs/s with {args.workers} worker(s)"
    )
    return 0
