"""Write COCO-format ground-truth files for caption evaluation.

    python data_prep/make_coco_gt.py ROOT --dataset clevr --split test --out gt/

CLEVR-Change: ``clevr_<split>_total.json`` (change ids and ``<id>_n`` no-change ids, as the official
evaluation expects), ``_change``, ``_no_change`` and one file per change type. Spot-the-Diff and IER:
``<dataset>_<split>_total.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clip4idc.data import write_gt
from clip4idc.errors import Clip4idcError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="dataset folder in its official layout")
    ap.add_argument("--dataset", required=True, choices=["clevr", "spot", "ier"])
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    args = ap.parse_args(argv)
    try:
        for path in write_gt(args.root, args.dataset, args.split, args.out):
            print(path)
    except Clip4idcError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
