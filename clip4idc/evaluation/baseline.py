"""The mean-sentence baseline: the one training caption that scores best for every pair (what a model
that ignores the images would write), so a model's numbers can be read against it."""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from pycocoevalcap.cider.cider_scorer import precook

from ..errors import Clip4idcError
from .metrics import _LINE_BREAKS, _normalise_references, _ptb_tokenize, score_captions


def _normalise_sentence(text: str) -> str:
    return " ".join(_LINE_BREAKS.sub(" ", text).lower().split()).rstrip(" .")


def _constant_cider(
    candidates: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> np.ndarray:
    """Corpus CIDEr-D of predicting each (tokenized) candidate for every pair, all candidates at once.

    Same formula as pycocoevalcap's ``CiderScorer`` (IDF over the pairs' references, clipped tf-idf cosine
    per n-gram order, Gaussian length penalty on bigram counts, x10), but the reference vectors are built once
    and looked up through an inverted index, so each extra candidate costs only its own n-grams.
    """
    cooked = [[precook(r, n) for r in pair_refs] for pair_refs in refs]
    doc_freq: Counter[tuple[str, ...]] = Counter()
    for pair_refs in cooked:
        doc_freq.update({g for r in pair_refs for g in r})
    log_pairs = math.log(float(len(cooked)))

    def weights(
        counts: Mapping[tuple[str, ...], int],
    ) -> tuple[dict[tuple[str, ...], float], np.ndarray, int]:
        vec = {g: tf * (log_pairs - math.log(max(1.0, doc_freq.get(g, 0.0)))) for g, tf in counts.items()}
        norm = np.zeros(n)
        for g, w in vec.items():
            norm[len(g) - 1] += w * w
        length = sum(tf for g, tf in counts.items() if len(g) == 2)
        return vec, np.sqrt(norm), length

    index: dict[tuple[str, ...], list[tuple[int, float]]] = defaultdict(list)
    ref_norm, ref_len, ref_pair = [], [], []
    for p, pair_refs in enumerate(cooked):
        for counts in pair_refs:
            vec, norm, length = weights(counts)
            r = len(ref_pair)
            for g, w in vec.items():
                index[g].append((r, w))
            ref_norm.append(norm)
            ref_len.append(length)
            ref_pair.append(p)
    norms_r = np.array(ref_norm)
    lens_r = np.array(ref_len, dtype=float)
    pair_of = np.array(ref_pair)
    refs_per_pair = np.bincount(pair_of, minlength=len(cooked)).astype(float)
    arrays = {
        g: (np.array([r for r, _ in rows]), np.array([w for _, w in rows])) for g, rows in index.items()
    }

    scores = np.zeros(len(candidates))
    for c, cand in enumerate(candidates):
        vec, norm_h, length_h = weights(precook(cand, n))
        num = np.zeros((len(pair_of), n))
        for g, w in vec.items():
            if g in arrays:
                rows, wr = arrays[g]
                num[rows, len(g) - 1] += np.minimum(w, wr) * wr
        denom = norm_h[None, :] * norms_r
        val = np.where(denom != 0, num / np.where(denom != 0, denom, 1.0), num)
        val *= np.exp(-((length_h - lens_r) ** 2) / (2 * sigma**2))[:, None]
        per_pair = (
            np.bincount(pair_of, weights=val.mean(axis=1), minlength=len(cooked)) / refs_per_pair * 10.0
        )
        scores[c] = per_pair.mean()
    return scores


def mean_sentence_baseline(
    train_captions: Sequence[str],
    references: Mapping[Any, Sequence[str]],
    max_candidates: int = 200,
    spice: str | os.PathLike[str] | bool | None = False,
) -> tuple[str, dict[str, Any]]:
    """The one training caption that, predicted for every pair, scores the best CIDEr - a floor for models.

    Candidates are the ``max_candidates`` most frequent training captions after normalisation (lower case,
    single spaces, no final full stop; ties keep first-seen order). Returns the sentence and its full metrics
    (identical to :func:`score_captions` with that sentence for every pair). SPICE is off by default here.
    """
    counts = Counter(s for s in (_normalise_sentence(c) for c in train_captions) if s)
    if not counts:
        raise Clip4idcError("no non-empty training captions for the mean-sentence baseline")
    candidates = [s for s, _ in counts.most_common(max(1, int(max_candidates)))]
    refs = _normalise_references(references)
    ids = list(refs)
    both: dict[Hashable, Sequence[str]] = {("gts", pid): refs[pid] for pid in ids}
    both[("cand",)] = candidates
    tok = _ptb_tokenize(both)
    cand_tok = tok[("cand",)]
    cider = _constant_cider(cand_tok, [tok[("gts", pid)] for pid in ids])
    best = int(np.argmax(cider))
    sentence = candidates[best]
    return sentence, score_captions({pid: sentence for pid in ids}, refs, spice=spice)
