"""Datasets for image difference captioning: CLEVR-Change, Spot-the-Diff, Image Editing Request, and a
synthetic CLEVR-Change generator (:mod:`clip4idc.data.synthetic`)."""

from __future__ import annotations

from .coco import gt_subsets, make_coco_gt, write_gt
from .datasets import AdaptationDataset, CaptionDataset, ImageCache
from .readers import (
    CHANGE_TYPES,
    DATASETS,
    Pair,
    detect_dataset,
    first_scenes,
    load_clevr,
    load_ier,
    load_pairs,
    load_spot,
    merge_spot_annotations,
)

__all__ = [
    "first_scenes",
    "CHANGE_TYPES",
    "DATASETS",
    "Pair",
    "load_pairs",
    "load_clevr",
    "load_spot",
    "load_ier",
    "detect_dataset",
    "merge_spot_annotations",
    "AdaptationDataset",
    "CaptionDataset",
    "ImageCache",
    "make_coco_gt",
    "gt_subsets",
    "write_gt",
]
