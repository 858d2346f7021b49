"""Retrieval R@K, median and mean rank, text->pair and pair->text, from a similarity matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _as_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().to("cpu").double().numpy()
    return np.asarray(array, dtype=np.float64)


def _rank_summary(ranks: np.ndarray) -> dict[str, float]:
    return {
        "R@1": float(100.0 * np.mean(ranks <= 1)),
        "R@5": float(100.0 * np.mean(ranks <= 5)),
        "R@10": float(100.0 * np.mean(ranks <= 10)),
        "MedianR": float(np.median(ranks)),
        "MeanR": float(np.mean(ranks)),
    }


def retrieval_metrics(similarity: Any, text_to_pair: Sequence[int]) -> dict[str, dict[str, float]]:
    """Text<->pair retrieval metrics from a (num_texts, num_pairs) similarity matrix; R@K in percent.

    * text->pair: for each text, the rank of its own pair among all pairs.
    * pair->text: for each pair that has texts, the rank of its best-scoring own text among all texts, where
      only other pairs' texts can outrank it (the usual multi-caption convention). Pairs with no texts are
      gallery distractors for text->pair and are skipped here.
    * Ties are pessimistic: a wrong item with a similarity equal to the right one counts as ranked above it,
      so a constant similarity matrix gets the worst rank, never R@1 = 100.
    Ranks start at 1. NaN similarities are an error.
    """
    sim = _as_numpy(similarity)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D (num_texts, num_pairs), got shape {sim.shape}")
    gt = np.asarray(text_to_pair, dtype=np.int64).reshape(-1)
    num_texts, num_pairs = sim.shape
    if gt.shape[0] != num_texts:
        raise ValueError(f"text_to_pair has {gt.shape[0]} entries for {num_texts} texts")
    if num_texts == 0 or num_pairs == 0:
        raise ValueError("similarity matrix is empty")
    if gt.min() < 0 or gt.max() >= num_pairs:
        raise ValueError(f"text_to_pair values must lie in [0, {num_pairs})")
    if np.isnan(sim).any():
        raise ValueError("similarity contains NaN")
    texts = np.arange(num_texts)
    true_sim = sim[texts, gt]
    t2p = (sim >= true_sim[:, None]).sum(axis=1)  # counts the true pair itself, so rank >= 1

    best = np.full(num_pairs, -np.inf)
    np.maximum.at(best, gt, true_sim)
    has_text = np.bincount(gt, minlength=num_pairs) > 0
    negative = np.ones_like(sim, dtype=bool)
    negative[texts, gt] = False
    p2t = 1 + (negative & (sim >= best[None, :])).sum(axis=0)
    return {"text_to_pair": _rank_summary(t2p), "pair_to_text": _rank_summary(p2t[has_text])}
