"""Error analysis over what :func:`clip4idc.evaluate.evaluate` and the retrieval head produce.

Why: looking at a model means slicing its outputs - the worst captions of one change type, which types
are mistaken for which, how far apart two seeds land, which captions a pair retrieves. These helpers do
that on plain dicts and lists (no pandas), so notebooks, scripts and tests slice the same way.

* :func:`examples_per_type` - a few pairs of each change type (to look at, or to caption).
* :func:`top_captions` - the best-scoring captions for one pair from a retrieval similarity matrix.
* :func:`select_predictions` - filter and sort ``predictions.json`` records (by type, correctness, a metric).
* :func:`confusion_matrix`, :func:`top_confusions` - the change-type confusion counts as a matrix / a list.
* :func:`per_type_rows`, :func:`format_rows` - the per-change-type table of a metrics dict, as rows / text.
* :func:`seed_spread` - mean ± sample std of chosen metrics over runs (``clip4idc report``'s summary).
* :func:`pointing_chance` - the pointing-game score of a peak dropped uniformly at random on the grid.
* :func:`attribute_accuracy` - on a synthetic set, how often the caption names the changed object's size,
  colour, material and shape right (and which values it says): what the encoder does and does not see.
* :func:`direction_accuracy` - on add/drop pairs, how often the pair embedding prefers its caption to the
  same caption with the change reversed (added ↔ removed): does the encoder know which image has the object?
* :func:`counterfactual_accuracy` - the same question for the kind of change: does a pair prefer its caption
  to the same object moved, recoloured, made shiny, added or removed?
* :func:`detection_accuracy` - the question from the image side: is a change caption closer to its pair than
  to the same scene with nothing changed (the before image and its distractor)? Can the encoder tell a
  change from camera jitter?
* :func:`retrieval_ceiling` - on a synthetic set, the text→pair R@K the best possible model would expect:
  a caption that names only "the small object" fits many pairs, so R@1 has a ceiling well below 100 %.
* :func:`score_candidates` - the per-pair scores of alternative captions for one pair (what a metric
  rewards), each scored against the same corpus of references.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import Clip4idcError

__all__ = [
    "TYPE_ORDER",
    "attribute_accuracy",
    "confusion_matrix",
    "counterfactual_accuracy",
    "detection_accuracy",
    "direction_accuracy",
    "examples_per_type",
    "format_rows",
    "per_type_rows",
    "pointing_chance",
    "retrieval_ceiling",
    "score_candidates",
    "seed_spread",
    "select_predictions",
    "top_captions",
    "top_confusions",
]

TYPE_ORDER = ("color", "material", "add", "drop", "move", "no_change")


def examples_per_type(
    pairs: Iterable[Any], per_type: int = 1, types: Sequence[str] = TYPE_ORDER
) -> dict[str, list[Any]]:
    """The first ``per_type`` pairs (reader :class:`~clip4idc.data.Pair` objects or anything with a
    ``change_type``) of each type in ``types``, in that order; types with no pair are left out."""
    out: dict[str, list[Any]] = {t: [] for t in types}
    for pair in pairs:
        typ = getattr(pair, "change_type", None)
        if typ in out and len(out[typ]) < per_type:
            out[typ].append(pair)
    return {t: v for t, v in out.items() if v}


def top_captions(
    similarity: Any, texts: Sequence[str], pair_index: int, k: int = 5
) -> list[tuple[str, float, int]]:
    """``(caption, score, rank)`` of the ``k`` texts scoring highest for pair ``pair_index`` in a
    (texts × pairs) similarity matrix (e.g. :func:`clip4idc.inference.retrieval_similarity`). A caption that
    occurs several times (e.g. shared no-change captions) is listed once, at its best score."""
    sim = np.asarray(similarity.detach().cpu() if hasattr(similarity, "detach") else similarity, dtype=float)
    if sim.ndim != 2 or sim.shape[0] != len(texts):
        raise ValueError(f"similarity must be (len(texts), pairs) = ({len(texts)}, P), got {sim.shape}")
    if not 0 <= pair_index < sim.shape[1]:
        raise IndexError(f"pair_index {pair_index} out of range for {sim.shape[1]} pairs")
    column = sim[:, pair_index]
    order = np.argsort(-column, kind="stable")
    out: list[tuple[str, float, int]] = []
    seen: set[str] = set()
    for row in order:
        text = texts[int(row)]
        if text in seen:
            continue
        seen.add(text)
        out.append((text, float(column[row]), len(out) + 1))
        if len(out) == k:
            break
    return out


def select_predictions(
    records: Mapping[str, Mapping[str, Any]],
    change_type: str | Sequence[str] | None = None,
    predicted_type: str | Sequence[str] | None = None,
    correct: bool | None = None,
    sort_by: str | None = "CIDEr",
    descending: bool = False,
    limit: int | None = None,
) -> list[tuple[str, Mapping[str, Any]]]:
    """Filter and sort ``predictions.json`` records (``{pair_id: {caption, references, CIDEr, ...,
    change_type, predicted_type}}``).

    ``change_type`` / ``predicted_type``: keep records whose true / caption-named type is that (or one of
    those); ``correct``: keep records where the two agree (True) or differ (False); ``sort_by``: a
    per-pair metric (missing or null values sort last), ``None`` keeps file order; ascending by default, so
    the worst captions come first. Returns ``[(pair_id, record), ...]``.
    """

    def as_set(value: str | Sequence[str] | None) -> set[str] | None:
        if value is None:
            return None
        return {value} if isinstance(value, str) else set(value)

    want_true, want_pred = as_set(change_type), as_set(predicted_type)
    rows = []
    for pid, rec in records.items():
        true, pred = rec.get("change_type"), rec.get("predicted_type")
        if want_true is not None and true not in want_true:
            continue
        if want_pred is not None and pred not in want_pred:
            continue
        if correct is not None and (true == pred) != correct:
            continue
        rows.append((str(pid), rec))
    if sort_by is not None:

        def key(item: tuple[str, Mapping[str, Any]]) -> tuple[bool, float]:
            value = item[1].get(sort_by)
            missing = not isinstance(value, (int, float)) or math.isnan(value)
            return (missing, 0.0 if missing else (-value if descending else value))

        rows.sort(key=key)
    return rows[:limit] if limit is not None else rows


def confusion_matrix(
    confusion: Mapping[str, Mapping[str, int]], labels: Sequence[str] | None = None
) -> tuple[list[str], list[str], list[list[int]]]:
    """``(rows, columns, counts)`` from :func:`clip4idc.change_type.confusion` (``[true][predicted]``).

    Rows are the true types present (in ``labels`` order, default :data:`TYPE_ORDER` then any others);
    columns the same labels plus every predicted label seen (e.g. ``unknown``), so the diagonal is
    "named the right type" wherever a row and a column share a label.
    """
    order = list(labels) if labels is not None else list(TYPE_ORDER)
    true_seen = [t for t in confusion]
    pred_seen = [p for row in confusion.values() for p in row]
    rows = [t for t in order if t in confusion] + sorted(set(true_seen) - set(order))
    cols = [t for t in order if t in confusion or t in pred_seen]
    cols += sorted(set(pred_seen) - set(cols))
    counts = [[int(confusion.get(r, {}).get(c, 0)) for c in cols] for r in rows]
    return rows, cols, counts


def top_confusions(confusion: Mapping[str, Mapping[str, int]], k: int = 5) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal cells ``(true, predicted, count)``, most frequent first."""
    cells = [
        (true, pred, int(n))
        for true, row in confusion.items()
        for pred, n in row.items()
        if pred != true and n > 0
    ]
    cells.sort(key=lambda c: -c[2])
    return cells[:k]


def per_type_rows(
    metrics: Mapping[str, Any],
    keys: Sequence[str] = ("CIDEr", "BLEU_4", "METEOR", "ROUGE_L", "type_accuracy", "R@1", "pointing_game"),
    include_total: bool = True,
) -> list[dict[str, Any]]:
    """One row per CLEVR-Change subset of an :func:`~clip4idc.evaluate.evaluate` result: ``total`` and
    ``change`` (when ``include_total``), then each type of ``metrics["per_type"]``; every row has ``subset``,
    ``n`` and ``keys`` (``None`` where not measured)."""
    per_type = metrics.get("per_type")
    if not per_type:
        raise Clip4idcError("these metrics have no per-type results (only CLEVR-Change has change types)")
    rows: list[dict[str, Any]] = []
    if include_total:
        cap = metrics.get("captioning", {})
        for subset, extra in (
            ("total", {"type_accuracy": metrics.get("type_accuracy")}),
            (
                "change",
                {
                    "type_accuracy": metrics.get("type_accuracy_change"),
                    "R@1": metrics.get("R@1"),
                    "pointing_game": metrics.get("pointing_game"),
                },
            ),
        ):
            sub = cap.get(subset)
            if sub is None:
                continue
            row: dict[str, Any] = {"subset": subset, "n": sub.get("num_pairs", 0)}
            row.update({k: extra.get(k, sub.get(k)) for k in keys})
            rows.append(row)
    for typ, values in per_type.items():
        row = {"subset": typ, "n": values.get("num_pairs", 0)}
        row.update({k: values.get(k) for k in keys})
        rows.append(row)
    return rows


def _cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_rows(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3
) -> str:
    """A plain-text table of dict rows (columns default to the first row's keys; ``None`` shows as ``-``)."""
    if not rows:
        return "(no rows)"
    columns = list(columns) if columns is not None else list(rows[0])
    cells = [[_cell(r.get(c), digits) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    head = "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths)))
    lines = [head, "-" * len(head)]
    for row in cells:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def seed_spread(
    runs: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Mean, sample std, n and the values of each metric over ``runs`` (metrics dicts, e.g. from
    :func:`~clip4idc.evaluate.evaluate`; nested keys as ``"a/b"``). Uses the summary behind
    ``clip4idc report``, so the numbers equal the CLI's. ``keys`` default: every numeric metric."""
    from ..cli.score import flatten_metrics, summarise_runs

    flat = [flatten_metrics(run) for run in runs]
    if keys is not None:
        flat = [{k: f[k] for k in keys if k in f} for f in flat]
    summary = summarise_runs(flat)
    for name, row in summary.items():
        row["values"] = [f[name] for f in flat if name in f]
    if keys is not None:
        summary = {k: summary[k] for k in keys if k in summary}
    return summary


def score_candidates(
    pair_id: str,
    candidates: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = ("BLEU_4", "METEOR", "ROUGE_L", "CIDEr"),
) -> dict[str, dict[str, float]]:
    """Score each candidate caption for ONE pair against its references: ``{label: {metric: score}}``.

    Every candidate is scored inside the whole ``references`` corpus (CIDEr's IDF comes from all pairs'
    references, as in a real evaluation; a pair's own scores do not depend on the other pairs'
    captions, which are left empty). One pycocoevalcap run per candidate.
    """
    from .metrics import score_captions_detailed

    pid = str(pair_id)
    refs = {str(k): list(v) for k, v in references.items()}
    if pid not in refs:
        raise Clip4idcError(f"pair {pid!r} has no references")
    out: dict[str, dict[str, float]] = {}
    for label, caption in candidates.items():
        preds = {k: "" for k in refs}
        preds[pid] = caption
        _, per_sample = score_captions_detailed(preds, refs, spice=False)
        out[label] = {m: float(per_sample[pid][m]) for m in metrics}
    return out


def pointing_chance(
    boxes: Sequence[Sequence[Sequence[float]]], image_size: tuple[int, int], grid: int
) -> float:
    """Chance level of the pointing game (%): the hit rate of a peak cell drawn uniformly from a
    ``grid × grid`` map, averaged over pairs (``boxes[i]`` = pair ``i``'s pixel boxes). Each cell is judged
    by :func:`clip4idc.metrics.pointing_hit`, the rule every pointing-game number uses."""
    from .metrics import pointing_hit

    if not boxes:
        raise ValueError("pointing_chance needs at least one pair")
    rates = []
    for pair_boxes in boxes:
        hits = 0
        for cell in range(grid * grid):
            heat = np.zeros((grid, grid))
            heat.flat[cell] = 1.0
            hits += pointing_hit(heat, pair_boxes, image_size)
        rates.append(hits / (grid * grid))
    return 100.0 * float(np.mean(rates))


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
