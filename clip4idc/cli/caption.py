"""``clip4idc caption BEFORE AFTER``: describe the change between two images."""

from __future__ import annotations

import argparse
import json
import sys

from ..weights.domain import domain_score
from ..weights.registry import load, print_notes


def run(args: argparse.Namespace) -> int:
    overrides = {"intra_layers": args.intra_layers} if args.intra_layers is not None else {}
    model = load(args.checkpoint, args.config, **overrides)
    print_notes(model, args.checkpoint)
    caption = model.caption(
        args.before,
        args.after,
        max_words=args.max_words,
        beam_size=args.beam,
        length_penalty=args.length_penalty,
    )
    check = domain_score(model, args.before, args.after)  # None: the checkpoint describes no domain
    if check is not None and not check.inside:  # stdout keeps just the caption
        print(f"notice: {args.before}, {args.after}: {check.notice()}", file=sys.stderr)
    if args.json:
        score = None if check is None else round(check.score, 4)
        print(
            json.dumps(
                {"before": args.before, "after": args.after, "caption": caption, "domain_score": score}
            )
        )
    else:
        print(caption)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("caption", help="caption the change between a before and an after image")
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--checkpoint", default="demo", help="'demo', a save_pretrained dir, or a .bin/.pt file")
    p.add_argument(
        "--config", default=None, help="named model config when shapes are not enough (e.g. ViT-B-32)"
    )
    p.add_argument("--intra-layers", type=int, default=None, help="per-image blocks (not visible in shapes)")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy, the original's decoding)")
    p.add_argument("--length-penalty", type=float, default=0.0)
    p.add_argument("--max-words", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)
