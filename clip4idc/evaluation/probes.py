"""Probes of the pair encoder on synthetic data: checks a published dataset cannot answer.

They need the generator's ``scenes.json`` (each object's attributes and the changed one) or its caption
grammar, so ``clip4idc eval`` runs them only where they apply, or when asked (``--probes``).

* :func:`attribute_accuracy` - how often the caption names the changed object's size, colour, material and
  shape right (and which values it says): what the encoder does and does not see.
* :func:`direction_accuracy` - on add/drop pairs, how often the pair embedding prefers its caption to the
  same caption with the change reversed (added <-> removed).
* :func:`counterfactual_accuracy` - the same question for the kind of change: does a pair prefer its caption
  to the same object moved, recoloured, made shiny, added or removed?
* :func:`detection_accuracy` - is a change caption closer to its pair than to the same scene with nothing
  changed (the before image and its distractor)? Can the encoder tell a change from camera jitter?
* :func:`retrieval_ceiling` - the text->pair R@K the best possible model would expect: a caption that names
  only "the small object" fits many pairs, so R@1 has a ceiling well below 100 %.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "attribute_accuracy",
    "counterfactual_accuracy",
    "detection_accuracy",
    "direction_accuracy",
    "retrieval_ceiling",
]


def attribute_accuracy(
    predictions: Mapping[str, Mapping[str, Any] | str], scenes: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per attribute (``size``, ``color``, ``material``, ``shape``): over the change pairs whose caption
    names one, how many do (``named``), the % whose named value is the changed object's (``correct``,
    before or after the change), and which values were named (``said``).

    ``predictions``: ``predictions.json`` of ``clip4idc eval`` (pair id → record with ``caption``), or
    pair id → caption;
    ``scenes``: the ``scenes`` of a synthetic set's ``scenes.json`` (pair id → scene; no-change pairs,
    ``<id>_n``, are skipped). Why: a caption can name the right change type about the wrong object, and
    CIDEr hides which attribute is missing; a value the model never varies is one its encoder does not see.
    """
    from ..data.synthetic.captions import ATTRIBUTE_OF_WORD

    vocab: dict[str, dict[str, str]] = {a: {} for a in ("size", "color", "material", "shape")}
    for word, (attr, value) in ATTRIBUTE_OF_WORD.items():
        vocab[attr][word] = value
    out: dict[str, dict[str, Any]] = {a: {"named": 0, "right": 0, "said": {}} for a in vocab}
    for pair_id, record in predictions.items():
        scene = scenes.get(str(pair_id))
        if scene is None or str(pair_id).endswith("_n"):
            continue
        change = scene["change"]
        target = scene["objects"][change["object"]]
        caption = record if isinstance(record, str) else record.get("caption", "")
        words = str(caption).lower().split()
        for attr, table in vocab.items():
            named = next((table[w] for w in words if w in table), None)
            if named is None:
                continue
            stats = out[attr]
            stats["named"] += 1
            stats["right"] += named in (target[attr], change.get("after", {}).get(attr))
            stats["said"][named] = stats["said"].get(named, 0) + 1
    for stats in out.values():
        right = stats.pop("right")
        stats["correct"] = 100.0 * right / stats["named"] if stats["named"] else None
    return out


def _accuracy_by_type(right: Sequence[bool], pairs: Sequence[Any]) -> dict[str, dict[str, float]]:
    """``{change type and "all": {"accuracy": % of True, "n": pairs}}`` for per-pair outcomes."""
    out: dict[str, dict[str, float]] = {}
    for name in (*sorted({p.change_type for p in pairs}), "all"):
        hits = [r for r, p in zip(right, pairs) if name in ("all", p.change_type)]
        out[name] = {"accuracy": 100.0 * float(np.mean(hits)), "n": len(hits)}
    return out


def _prefers_own_caption(
    model: Any,
    pairs: Sequence[Any],
    rewrite: Callable[[Any, np.random.Generator], list[str]],
    max_words: int,
    batch_size: int,
    device: str,
    precision: str,
    seed: int,
) -> dict[str, dict[str, float]] | None:
    """Per change type and ``all``: the % of pairs whose pooled embedding is closer to their first caption
    than to every rewrite of it (``rewrite(pair, rng)``; pairs it gives none are left out), and how many
    pairs (``n``). None when no pair has a rewrite."""
    from ..data.datasets import AdaptationDataset
    from ..network.inference import encode_pairs, encode_texts

    rng = np.random.default_rng(seed)
    chosen, alternatives = [], []
    for p in pairs:
        alts = rewrite(p, rng) if p.captions else []
        if alts:
            chosen.append(p)
            alternatives.append(alts)
    if not chosen:
        return None
    ds = AdaptationDataset(chosen, train=False, resolution=model.config.resolution, max_words=max_words)
    pooled = encode_pairs(model, ds, batch_size, device, precision)
    pooled = pooled / pooled.norm(dim=-1, keepdim=True)
    texts = [c for p, alts in zip(chosen, alternatives) for c in (p.captions[0], *alts)]
    text = encode_texts(model, texts, max_words, 4 * batch_size, device, precision)
    text = text / text.norm(dim=-1, keepdim=True)
    right, start = [], 0
    for i, alts in enumerate(alternatives):
        sims = text[start : start + 1 + len(alts)] @ pooled[i]
        right.append(bool(sims[0] > sims[1:].max()))
        start += 1 + len(alts)
    return _accuracy_by_type(right, chosen)


def direction_accuracy(
    model: Any,
    pairs: Sequence[Any],
    max_words: int = 32,
    batch_size: int = 64,
    device: str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per change type (``add``, ``drop``) and ``all``: the % of pairs whose pooled embedding is closer to
    their first caption than to that caption reversed (:func:`clip4idc.data.rewrite.reverse_caption`), and
    how many pairs (``n``). 50 % is chance: an encoder blind to which image holds the object.

    Only add/drop pairs whose first caption comes from the synthetic templates count.
    """
    from ..data.rewrite import reverse_caption

    def reverse(p: Any, rng: np.random.Generator) -> list[str]:
        backward = reverse_caption(p.captions[0], p.change_type, rng)
        return [backward] if backward else []

    out = _prefers_own_caption(model, pairs, reverse, max_words, batch_size, device, precision, seed)
    if out is None:
        raise ValueError("direction_accuracy needs add/drop pairs with synthetic-template captions")
    return out


def counterfactual_accuracy(
    model: Any,
    pairs: Sequence[Any],
    max_words: int = 32,
    batch_size: int = 64,
    device: str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per change type and ``all``: the % of change pairs whose pooled embedding prefers their first caption
    to all four rewrites of it with the other changes (:func:`clip4idc.data.rewrite.counterfactual_captions`:
    same object, moved / recoloured / removed ...), and ``n``. 20 % is chance: does the encoder know *what*
    happened to the object? Only pairs whose first caption follows the synthetic templates count.
    """
    from ..data.rewrite import counterfactual_captions

    def others(p: Any, rng: np.random.Generator) -> list[str]:
        return counterfactual_captions(p.captions[0], p.change_type, 4, rng)

    out = _prefers_own_caption(model, pairs, others, max_words, batch_size, device, precision, seed)
    if out is None:
        raise ValueError("counterfactual_accuracy needs change pairs with synthetic-template captions")
    return out


def detection_accuracy(
    model: Any,
    pairs: Sequence[Any],
    max_words: int = 32,
    batch_size: int = 64,
    device: str = "cpu",
    precision: str = "fp32",
) -> dict[str, dict[str, float]]:
    """Per change type and ``all``: the % of change pairs whose first caption is closer to the pair than to
    the same scene unchanged (its before image and its distractor, CLEVR-Change's camera/light jitter), and
    ``n``. 50 % is chance: an encoder that cannot tell this change from jitter. Needs a distractor per
    pair, or its scene's no-change pair among ``pairs`` (CLEVR-Change, the synthetic sets); any caption
    wording works.

    Why: the captioner called most moves and many material changes "no change"; this asks whether the
    pair embedding already confuses them, before any decoder is trained.
    """
    from dataclasses import replace

    from ..data.datasets import AdaptationDataset, CaptionDataset
    from ..network.inference import encode_pairs, encode_texts

    res = model.config.resolution
    # the training set's own lookup: a pair's distractor, else its scene's no-change pair's after image
    scan = AdaptationDataset(list(pairs), train=False, resolution=res, max_words=max_words)
    found = [(p, scan.distractor_of(p)[0]) for p in scan.pairs if p.captions]
    chosen = [p for p, distractor in found if distractor is not None]
    if not chosen:
        raise ValueError("detection_accuracy needs change pairs with a distractor image (CLEVR-Change style)")
    pooled = encode_pairs(
        model,
        AdaptationDataset(chosen, train=False, resolution=res, max_words=max_words),
        batch_size,
        device,
        precision,
    )
    still = [replace(p, after=d, change_type="no_change") for p, d in found if d is not None]
    unchanged = encode_pairs(
        model, CaptionDataset(still, train=False, resolution=res), batch_size, device, precision
    )
    text = encode_texts(model, [p.captions[0] for p in chosen], max_words, 4 * batch_size, device, precision)
    text, pooled, unchanged = (x / x.norm(dim=-1, keepdim=True) for x in (text, pooled, unchanged))
    right = ((text * pooled).sum(-1) > (text * unchanged).sum(-1)).tolist()
    return _accuracy_by_type(right, chosen)


def _naming_weights(scene: Mapping[str, Any]) -> dict[frozenset, float]:
    """P(the generator names the changed object by each attribute subset) in its scene: the first unique
    subset (the full description when unique) half the time, else one unique subset at random."""
    from ..data.synthetic.captions import unique_specs
    from ..data.synthetic.scene import Obj

    objs = [
        Obj(
            o["shape"],
            o["color"],
            o["material"],
            o["size"],
            o["position"][0],
            o["position"][1],
            o["rotation"],
        )
        for o in scene["objects"]
    ]
    specs = [frozenset(s.items()) for s in unique_specs(objs[scene["change"]["object"]], objs)]
    weights: dict[frozenset, float] = {}
    for k, spec in enumerate(specs):
        weights[spec] = weights.get(spec, 0.0) + 0.5 / len(specs) + (0.5 if k == 0 else 0.0)
    return weights


def retrieval_ceiling(
    pairs: Sequence[Any], scenes: Mapping[str, Mapping[str, Any]], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, Any]:
    """The text→pair R@K (%) that the Bayes-optimal retriever expects on these change pairs of a synthetic
    set, over all their captions, overall and per change type (``per_type``: R@1).

    The ideal model sees every scene exactly and ranks the pairs by how likely the generator was to write
    the caption for each (:func:`clip4idc.data.synthetic.captions.parse_change_caption` reads what it names;
    :func:`_naming_weights` says how likely each pair names its object that way), ties broken at random.
    Captions that name the object by a relation to another one are counted as found (``relational``, % of
    texts), so the numbers stay upper bounds. Why: "the small object moved" fits dozens of pairs; no encoder
    can beat that ambiguity, so a retrieval target means little without its ceiling.
    Raises ValueError when a caption is not the generator's or does not fit its own scene.
    """
    from ..data.synthetic.captions import parse_change_caption

    chosen = [p for p in pairs if p.change_type not in (None, "no_change") and p.captions]
    if not chosen:
        raise ValueError("retrieval_ceiling needs change pairs with captions")
    changes = [scenes[str(p.pair_id)]["change"] for p in chosen]
    naming = [_naming_weights(scenes[str(p.pair_id)]) for p in chosen]
    targets = [(c["type"], c["to"] if c["type"] in ("color", "material") else None) for c in changes]
    found: dict[int, list[float]] = {k: [] for k in ks}
    per_type: dict[str, list[float]] = {}
    relational = 0
    columns: dict[tuple, np.ndarray] = {}
    for i, pair in enumerate(chosen):
        for caption in pair.captions:
            parsed = parse_change_caption(caption)
            if parsed is None or (parsed.change_type, parsed.to) != targets[i]:
                raise ValueError(
                    f"pair {pair.pair_id}: {caption!r} is not a caption the generator writes for it"
                )
            if parsed.spec is None:
                relational += 1
                hits = dict.fromkeys(ks, 1.0)
            else:
                key = (parsed.change_type, parsed.to, parsed.spec)
                if key not in columns:
                    columns[key] = np.array(
                        [w.get(parsed.spec, 0.0) if t == key[:2] else 0.0 for w, t in zip(naming, targets)]
                    )
                weight = columns[key]
                own = weight[i]
                if own <= 0:
                    raise ValueError(
                        f"pair {pair.pair_id}: {caption!r} does not single out its changed object"
                    )
                above = int((weight > own).sum())
                tied = int((weight == own).sum())
                hits = {k: min(max((k - above) / tied, 0.0), 1.0) for k in ks}
            for k in ks:
                found[k].append(hits[k])
            per_type.setdefault(pair.change_type, []).append(hits[ks[0]])
    texts = len(found[ks[0]])
    out: dict[str, Any] = {f"R@{k}": 100.0 * float(np.mean(v)) for k, v in found.items()}
    out["per_type"] = {t: 100.0 * float(np.mean(v)) for t, v in per_type.items()}
    out["num_pairs"] = len(chosen)
    out["num_texts"] = texts
    out["relational"] = 100.0 * relational / texts
    return out
