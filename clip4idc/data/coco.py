"""COCO-format ground truth for caption evaluation (pycocoevalcap reads ``images`` and ``annotations``).

CLEVR-Change is evaluated as its official evaluation does: change pairs keep the integer scene id, their
no-change twins get the ``_n`` suffix, and scores are also reported per change type; so ``write_gt``
writes the total file plus change-only, no-change-only and one file per change type.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .readers import CHANGE_TYPES, Pair, load_pairs


def make_coco_gt(pairs: Iterable[Pair]) -> dict:
    """``{"images": [{"id"}], "annotations": [{"image_id", "caption", "id"}], ...}`` for the pairs."""
    images, annotations = [], []
    k = 0
    for p in pairs:
        images.append({"id": p.pair_id})
        for c in p.captions:
            annotations.append({"image_id": p.pair_id, "caption": c, "id": k})
            k += 1
    return {"images": images, "annotations": annotations, "type": "captions", "info": {}, "licenses": []}


def gt_subsets(pairs: list[Pair], dataset: str) -> dict[str, list[Pair]]:
    """Named subsets to score separately: ``total`` always; for CLEVR-Change also ``change``,
    ``no_change`` and each change type."""
    out = {"total": pairs}
    if dataset == "clevr":
        out["change"] = [p for p in pairs if p.change_type != "no_change"]
        out["no_change"] = [p for p in pairs if p.change_type == "no_change"]
        for t in CHANGE_TYPES:
            out[t] = [p for p in pairs if p.change_type == t]
    return out


def write_gt(root: str | Path, dataset: str, split: str, out_dir: str | Path) -> list[Path]:
    """Write ``<dataset>_<split>_<subset>.json`` COCO files; returns their paths."""
    pairs = load_pairs(root, dataset, split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, subset in gt_subsets(pairs, dataset).items():
        path = out_dir / f"{dataset}_{split}_{name}.json"
        path.write_text(json.dumps(make_coco_gt(subset)), encoding="utf-8")
        written.append(path)
    return written
