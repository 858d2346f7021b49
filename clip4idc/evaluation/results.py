"""Slicing evaluation results: what :func:`~clip4idc.evaluation.evaluate.evaluate` and the retrieval head produce.

Why: looking at a model means slicing its outputs - the worst captions of one change type, which types
are mistaken for which, how far apart two seeds land, which captions a pair retrieves. These helpers do
that on plain dicts and lists (no pandas), so notebooks, scripts and tests slice the same way.

* :func:`examples_per_type` - a few pairs of each change type (to look at, or to caption).
* :func:`top_captions` - the best-scoring captions for one pair from a retrieval similarity matrix.
* :func:`select_predictions` - filter and sort ``predictions.json`` records (by type, correctness, a metric).
* :func:`confusion_matrix`, :func:`top_confusions` - the change-type confusion counts as a matrix / a list.
* :func:`per_type_rows`, :func:`format_rows` - the per-change-type table of a metrics dict, as rows / text.
* :func:`seed_spread` - mean ± sample std of chosen metrics over runs (``clip4idc report``'s summary).
* :func:`score_candidates` - the per-pair scores of alternative captions for one pair (what a metric
  rewards), each scored against the same corpus of references.

* :func:`flatten_metrics`, :func:`summarise_runs` - ``clip4idc report``'s summary of several runs.
(Checks that run the network on synthetic data live in :mod:`.probes`.)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import Clip4idcError
from .change_types import CHANGE_LABELS

__all__ = [
    "confusion_matrix",
    "examples_per_type",
    "flatten_metrics",
    "format_rows",
    "format_summary",
    "per_type_rows",
    "score_candidates",
    "seed_spread",
    "select_predictions",
    "summarise_runs",
    "top_captions",
    "top_confusions",
]


def examples_per_type(
    pairs: Iterable[Any], per_type: int = 1, types: Sequence[str] = CHANGE_LABELS
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
    (texts × pairs) similarity matrix (e.g. :func:`clip4idc.network.inference.retrieval_similarity`). A caption that
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
    """``(rows, columns, counts)`` from :func:`clip4idc.evaluation.change_types.confusion` (``[true][predicted]``).

    Rows are the true types present (in ``labels`` order, default :data:`CHANGE_LABELS` then any others);
    columns the same labels plus every predicted label seen (e.g. ``unknown``), so the diagonal is
    "named the right type" wherever a row and a column share a label.
    """
    order = list(labels) if labels is not None else list(CHANGE_LABELS)
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
    """One row per CLEVR-Change subset of an :func:`~clip4idc.evaluation.evaluate.evaluate` result: ``total`` and
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
    :func:`~clip4idc.evaluation.evaluate.evaluate`; nested keys as ``"a/b"``). Uses the summary behind
    ``clip4idc report``, so the numbers equal the CLI's. ``keys`` default: every numeric metric."""
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


def flatten_metrics(obj: Any, prefix: str = "") -> dict[str, float]:
    """Nested dict of numbers to ``{"a/b/c": value}``; strings, ``None``, booleans and NaN are skipped."""
    out: dict[str, float] = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            out.update(flatten_metrics(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and prefix:
        if not math.isnan(obj):
            out[prefix] = float(obj)
    return out


def summarise_runs(run_metrics: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{metric: {"mean", "std", "n"}}`` over runs, metrics in first-seen order; std is the sample std."""
    names: dict[str, None] = {}
    for metrics in run_metrics:
        names.update(dict.fromkeys(metrics))
    summary: dict[str, dict[str, float]] = {}
    for name in names:
        values = [m[name] for m in run_metrics if name in m]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[name] = {"mean": statistics.fmean(values), "std": std, "n": len(values)}
    return summary


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_summary(metrics: Mapping[str, Any]) -> str:
    """A readable table of ``metrics`` (what :func:`evaluate` returns) for the terminal."""
    lines = [
        f"{metrics['dataset']} {metrics['split']}: {metrics['num_pairs']} pairs, checkpoint "
        f"{metrics.get('checkpoint') or '(in memory)'}"
    ]
    head = f"{'subset':<10} {'n':>5} {'CIDEr':>7} {'BLEU_4':>7} {'METEOR':>7} {'ROUGE_L':>7}"
    head += f" {'type%':>6} {'R@1':>6} {'point%':>6}"
    lines += [head, "-" * len(head)]
    cap = metrics["captioning"]
    per_type = metrics.get("per_type") or {}
    rows: list[tuple[str, Mapping[str, Any] | None, Any, Any, Any]] = [
        ("total", cap.get("total"), metrics["type_accuracy"], None, None)
    ]
    if "change" in cap:
        rows.append(
            (
                "change",
                cap.get("change"),
                metrics["type_accuracy_change"],
                metrics["R@1"],
                metrics["pointing_game"],
            )
        )
        rows.append(("no_change", cap.get("no_change"), metrics["type_accuracy_no_change"], None, None))
    else:
        rows[0] = ("total", cap.get("total"), None, metrics["R@1"], None)
    for typ, row in per_type.items():
        if typ != "no_change":
            rows.append((typ, cap.get(typ), row["type_accuracy"], row["R@1"], row["pointing_game"]))
    for name, sub, typ_acc, r1, pg in rows:
        sub = sub or {}
        lines.append(
            f"{name:<10} {sub.get('num_pairs', 0):>5} {_fmt(sub.get('CIDEr')):>7} {_fmt(sub.get('BLEU_4')):>7} "
            f"{_fmt(sub.get('METEOR')):>7} {_fmt(sub.get('ROUGE_L')):>7} {_fmt(typ_acc, 1):>6} "
            f"{_fmt(r1, 1):>6} {_fmt(pg, 1):>6}"
        )
    ret = metrics["retrieval"]
    for direction in ("text_to_pair", "pair_to_text"):
        r = ret.get(direction)
        if r:
            lines.append(
                f"retrieval {direction}: R@1 {r['R@1']:.1f}  R@5 {r['R@5']:.1f}  R@10 {r['R@10']:.1f}  "
                f"MedR {r['MedianR']:.1f}  MeanR {r['MeanR']:.1f}"
            )
    ceiling = metrics.get("retrieval_ceiling")
    if ceiling:
        lines.append(
            f"retrieval ceiling text_to_pair (best possible model, these captions): R@1 {ceiling['R@1']:.1f}  "
            f"R@5 {ceiling['R@5']:.1f}  R@10 {ceiling['R@10']:.1f}"
        )
    direction = metrics.get("direction_accuracy")
    if direction:
        lines.append(
            "direction (pair prefers its add/drop caption to the reversed one; chance 50): "
            + "  ".join(f"{k} {v['accuracy']:.1f}" for k, v in direction.items())
        )
    detection = metrics.get("detection_accuracy")
    if detection:
        lines.append(
            "detection (change caption prefers its pair to the scene unchanged; chance 50): "
            + "  ".join(f"{k} {v['accuracy']:.1f}" for k, v in detection.items())
        )
    point = metrics.get("pointing_game_detail")
    if point and point.get("readouts"):
        lines.append(
            f"pointing game: decoder attention {point['overall']:.1f} (after image alone "
            f"{point['after_image_only']['overall']:.1f})  encoder difference map "
            f"{point['readouts']['difference']['overall']:.1f}  pixel difference {point['readouts']['pixels']['overall']:.1f}"
            f"  chance {point['chance']:.1f}"
        )
    base = metrics.get("baseline")
    if base:
        lines.append(
            f"baseline {base['sentence']!r}: CIDEr {_fmt(base['CIDEr'])}  BLEU_4 {_fmt(base['BLEU_4'])}  "
            f"METEOR {_fmt(base['METEOR'])}  ROUGE_L {_fmt(base['ROUGE_L'])}  type% "
            f"{_fmt(base.get('type_accuracy'), 1)}"
        )
    else:
        lines.append(f"baseline: {metrics.get('baseline_status')}")
    lines.append(f"SPICE: {_fmt(metrics['SPICE'])} ({metrics['SPICE_status']})")
    if metrics["type_accuracy"] is None:
        lines.append(f"type accuracy: {metrics['type_accuracy_status']}")
    if metrics["pointing_game"] is None:
        lines.append(f"pointing game: {metrics['pointing_game_status']}")
    return "\n".join(lines)
