"""``clip4idc examples``: caption the bundled example pairs (one per change type and a no-change one).

This is the demo the README's first command runs: it needs no data and no download. It prints each
pair's caption beside its reference and the change type read from the caption, and writes one per-word
attention figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.examples import load_examples
from ..evaluation.change_types import classify_change
from ..weights.registry import load, print_notes


def run(args: argparse.Namespace) -> int:
    from ..explanation import caption_with_attention, plot_word_maps

    model = load(args.checkpoint)
    print_notes(model, args.checkpoint)
    examples = load_examples()
    captions = model.caption(
        [e["before"] for e in examples], [e["after"] for e in examples], beam_size=args.beam
    )
    right = 0
    print(f"{'change':9s} {'read as':9s} caption  (reference)")
    for ex, cap in zip(examples, captions):
        read = classify_change(cap)
        right += read == ex["change_type"].replace("none", "no_change")
        print(f"{ex['change_type']:9s} {read:9s} {cap}  ({ex['caption']})")
    print(f"change type named correctly for {right} of {len(examples)} example pairs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pick = next((e for e in examples if e["change_type"] == args.attention), examples[0])
    result = caption_with_attention(model, pick["before"], pick["after"])
    path = out / f"attention_{pick['change_type']}.png"
    plot_word_maps(result, pick["before"], pick["after"], path=path)
    print(f"per-word attention for the {pick['change_type']} pair: {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clip4idc examples")
    _add_arguments(parser)
    return run(parser.parse_args(argv))


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="demo")
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--attention", default="move", help="which example's attention figure to write")
    p.add_argument("--out", default="demo_output", help="folder for the attention figure")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("examples", help="caption the bundled example pairs (the demo)")
    _add_arguments(p)
    p.set_defaults(func=run)


if __name__ == "__main__":
    sys.exit(main())
