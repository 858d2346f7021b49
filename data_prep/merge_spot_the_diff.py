"""Merge Spot-the-Diff's raw annotations (one entry per annotator) into one entry per image pair.

    python data_prep/merge_spot_the_diff.py spot-the-diff/data/annotations OUT_DIR

Reads ``{train,val,test}.json`` and writes ``reformat_{train,val,test}.json`` as
``[{"img_id": ..., "sentences": [...]}]``, the files the Spot-the-Diff reader prefers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clip4idc.data.readers import merge_spot_file
from clip4idc.errors import Clip4idcError
from clip4idc.io import write_json_atomic


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("annotations", type=Path, help="folder with the raw train.json, val.json, test.json")
    ap.add_argument("out", type=Path, help="folder for reformat_<split>.json")
    ap.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    args = ap.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for split in args.splits:
            src = args.annotations / f"{split}.json"
            merged = merge_spot_file(src)
            dst = args.out / f"reformat_{split}.json"
            write_json_atomic(dst, merged, indent=None)
            print(f"{src} -> {dst}: {len(merged)} pairs")
    except Clip4idcError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
