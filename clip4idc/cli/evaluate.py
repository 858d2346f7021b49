"""``clip4idc eval``: evaluate a model on a dataset split (see :mod:`clip4idc.evaluation.evaluate`)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from ..evaluation.evaluate import UnsavedResults, _check_out, _load_split, evaluate
from ..evaluation.results import format_summary


def run(args: argparse.Namespace) -> int:
    """``clip4idc eval``: evaluate, print the summary on stderr and the metrics path (or JSON) on stdout."""
    import json

    from ..weights.registry import load, print_notes

    _check_out(Path(args.out) if args.out else None)
    _load_split(args.data, args.dataset, args.split)  # bad data fails before the model loads
    overrides = {"intra_layers": args.intra_layers} if args.intra_layers is not None else {}
    model = load(args.checkpoint, args.config, **overrides)
    print_notes(model, args.checkpoint)
    spice: str | bool | None = False if args.no_spice else args.spice_lib
    unsaved: UnsavedResults | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            metrics = evaluate(
                model,
                args.data,
                dataset=args.dataset,
                split=args.split,
                out=args.out,
                batch_size=args.batch_size,
                beam_size=args.beam,
                max_words=args.max_words,
                precision=args.precision,
                device=args.device,
                spice=spice,
                baseline=not args.no_baseline,
                pointing=not args.no_pointing,
                max_pairs=args.max_pairs,
                workers=args.workers,
                checkpoint=args.checkpoint,
                progress=not args.no_progress,
                probes=args.probes,
            )
        except UnsavedResults as err:
            metrics, unsaved = err.metrics, err
    for item in caught:
        print(f"warning: {item.message}", file=sys.stderr)
    print(format_summary(metrics), file=sys.stderr)
    if unsaved is not None:  # the table above is all that is left of the run: say so, and fail
        print(json.dumps(metrics, indent=2))
        raise unsaved
    if args.out:
        print(Path(args.out) / "metrics.json")
    else:
        print(json.dumps(metrics, indent=2))
    return 0


def register(subparsers: Any) -> None:
    """Add ``eval`` to the ``clip4idc`` command line."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on a dataset split: captions, change types, retrieval, pointing game",
        description=(
            "Caption every pair of a split, score with pycocoevalcap (CLEVR-Change: total, change, no-change "
            "and per change type), read the change type from each caption, run text<->pair retrieval on the "
            "change pairs, play the pointing game (synthetic data) and compare with the mean-sentence "
            "baseline. With --out, writes OUT/predictions.json and OUT/metrics.json (atomically, "
            "metrics last) and prints the metrics path; otherwise prints the metrics JSON."
        ),
    )
    p.add_argument(
        "--checkpoint",
        default="demo",
        help="'demo', a save_pretrained dir, a checkpoint file, or a train run folder (uses best/)",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder (official layout)")
    p.add_argument(
        "--dataset",
        choices=("clevr", "spot", "ier"),
        default=None,
        help="dataset kind (default: detected from the files)",
    )
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--out", metavar="OUT", default=None, help="folder for metrics.json and predictions.json")
    p.add_argument("--config", default=None, help="named model config when shapes are not enough")
    p.add_argument("--intra-layers", type=int, default=None, help="per-image blocks (not visible in shapes)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy, the original's decoding)")
    p.add_argument("--max-words", type=int, default=None, help="caption length budget (default: model's)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "auto"))
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--workers", type=int, default=0, help="image-loading worker processes")
    p.add_argument(
        "--max-pairs", type=int, default=None, help="evaluate only the first N scenes (quick check)"
    )
    spice = p.add_mutually_exclusive_group()
    spice.add_argument(
        "--spice-lib",
        metavar="DIR",
        default=None,
        help="folder holding the stanford-corenlp-3.6.0 jars for SPICE "
        "(default: $CLIP4IDC_SPICE_LIB or pycocoevalcap's lib; else SPICE is unavailable)",
    )
    spice.add_argument("--no-spice", action="store_true", help="skip SPICE even if its jars are available")
    p.add_argument("--no-baseline", action="store_true", help="skip the mean-sentence baseline")
    p.add_argument("--no-pointing", action="store_true", help="skip the pointing game")
    p.add_argument(
        "--probes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="synthetic-only probes of the pair encoder (attribute, direction and detection accuracy, "
        "retrieval ceiling), run only where the data allows (default on; --no-probes skips them)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
