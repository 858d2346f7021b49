"""``clip4idc score`` (caption metrics for any predictions file) and ``clip4idc report`` (mean +- std over runs).

``score`` prints the same numbers ``pycocoevalcap`` gives when called directly (see :mod:`clip4idc.evaluation.metrics`)
as JSON on stdout; everything else (warnings, Java's tokenizer chatter) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import Clip4idcError, fail
from ..evaluation.results import flatten_metrics, summarise_runs
from ..io import read_json, write_json_atomic


def register(subparsers: Any) -> None:
    """Add ``score`` and ``report`` to the ``clip4idc`` command line."""
    score = subparsers.add_parser(
        "score",
        help="score a predictions file against COCO-format ground truth (BLEU, METEOR, ROUGE-L, CIDEr, SPICE)",
        description=(
            "Score PRED ({pair_id: caption}, or a COCO results list of {image_id, caption}) against GT "
            "(COCO captions format) with pycocoevalcap and print the metrics as JSON. Scores are on "
            "pycocoevalcap's native scale (CIDEr 1.5 = 150 in papers). SPICE runs only if the Stanford "
            "CoreNLP 3.6.0 jars are on disk (--spice-lib or CLIP4IDC_SPICE_LIB); nothing is downloaded."
        ),
    )
    score.add_argument(
        "pred", metavar="PRED.json", help="predictions: {pair_id: caption} or [{image_id, caption}]"
    )
    score.add_argument("gt", metavar="GT.json", help="COCO-format ground truth {images, annotations}")
    spice = score.add_mutually_exclusive_group()
    spice.add_argument(
        "--spice-lib", metavar="DIR", help="folder holding the stanford-corenlp-3.6.0 jars for SPICE"
    )
    spice.add_argument("--no-spice", action="store_true", help="skip SPICE even if its jars are available")
    score.add_argument("--out", metavar="FILE", help="also write the metrics JSON here (atomically)")
    score.add_argument(
        "--per-sample",
        metavar="FILE",
        help="write {pair_id: {caption, references, per-pair scores incl. CIDEr}} here for error analysis",
    )
    score.set_defaults(func=run_score)

    report = subparsers.add_parser(
        "report",
        help="mean +- std of metrics over several runs (seeds)",
        description=(
            "Read RUN_DIR/metrics.json from each run (or the JSON file itself), flatten nested keys with '/', "
            "and print mean +- sample std (n-1; 0 for a single run) per metric with the number of runs n."
        ),
    )
    report.add_argument("runs", metavar="RUN_DIR", nargs="+", help="run folders holding metrics.json")
    report.add_argument(
        "--json", action="store_true", help="print JSON {metric: {mean, std, n}} instead of a table"
    )
    report.add_argument("--out", metavar="FILE", help="also write the summary JSON here (atomically)")
    report.set_defaults(func=run_report)


# ----------------------------------------------------------------------------------------------------------
# score
# ----------------------------------------------------------------------------------------------------------


def load_predictions(path: str | Path) -> dict[str, str]:
    """Predictions file to ``{pair_id: caption}``: a mapping, or a COCO results list (ids become str)."""
    data = read_json(path)
    if isinstance(data, Mapping):
        items = list(data.items())
    elif isinstance(data, list):
        items = []
        for k, row in enumerate(data):
            if not isinstance(row, Mapping) or "image_id" not in row or "caption" not in row:
                raise fail(path, f"entry {k} of the results list needs 'image_id' and 'caption'")
            items.append((row["image_id"], row["caption"]))
    else:
        raise fail(path, "expected {pair_id: caption} or a list of {image_id, caption}")
    preds: dict[str, str] = {}
    for key, caption in items:
        pid = str(key)
        if not isinstance(caption, str):
            raise fail(path, f"caption for {pid!r} is {type(caption).__name__}, expected a string")
        if pid in preds:
            raise fail(path, f"pair id {pid!r} appears more than once")
        preds[pid] = caption
    if not preds:
        raise fail(path, "no predictions")
    return preds


def load_references(path: str | Path) -> dict[str, list[str]]:
    """COCO-format ground truth file to ``{pair_id: [captions]}``."""
    from ..evaluation.metrics import coco_gt_to_references

    try:
        return coco_gt_to_references(read_json(path))
    except Clip4idcError as err:
        if str(err).startswith(f"{path}:"):
            raise
        raise fail(path, str(err)) from None


def run_score(args: argparse.Namespace) -> int:
    """Score, print metrics JSON on stdout, optionally write it and the per-sample records."""
    from ..evaluation.metrics import per_sample_records, score_captions_detailed

    preds = load_predictions(args.pred)
    refs = load_references(args.gt)
    spice: str | bool | None = False if args.no_spice else args.spice_lib
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            metrics, per_sample = score_captions_detailed(preds, refs, spice=spice)
        except Clip4idcError as err:
            message = str(err)
            if message.startswith("predictions"):
                raise fail(args.pred, message) from None
            if message.startswith(("pair ", "no reference")):
                raise fail(args.gt, message) from None
            raise
    for item in caught:
        print(f"warning: {item.message}", file=sys.stderr)
    text = json.dumps(metrics, indent=2)
    if args.out:
        write_json_atomic(args.out, metrics)
    if args.per_sample:
        write_json_atomic(args.per_sample, per_sample_records(preds, refs, per_sample))
    print(text)
    return 0


# ----------------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------------


def _metrics_path(run: str) -> Path:
    path = Path(run)
    if path.is_dir():
        path = path / "metrics.json"
        if not path.is_file():
            raise fail(run, "no metrics.json in this run folder")
    return path


def format_report(summary: Mapping[str, Mapping[str, float]], num_runs: int) -> str:
    """Plain-text table: metric, mean +- std, n (marked when a metric is missing from some runs)."""
    width = max([len("metric"), *(len(k) for k in summary)])
    lines = [f"{'metric':<{width}}  {'mean':>12}   {'std':<12} n", "-" * (width + 32)]
    for name, row in summary.items():
        n = int(row["n"])
        flag = f"{n}" if n == num_runs else f"{n} (of {num_runs})"
        lines.append(f"{name:<{width}}  {row['mean']:>12.4f} \u00b1 {row['std']:<12.4f} {flag}")
    return "\n".join(lines)


def run_report(args: argparse.Namespace) -> int:
    """Print mean +- std per metric over the run folders given."""
    runs = []
    for run in args.runs:
        path = _metrics_path(run)
        data = read_json(path)
        if not isinstance(data, Mapping):
            raise fail(path, "expected a JSON object of metrics")
        runs.append(flatten_metrics(data))
    summary = summarise_runs(runs)
    if not summary:
        raise Clip4idcError("no numeric metrics found in " + ", ".join(args.runs))
    if args.out:
        write_json_atomic(args.out, summary)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{len(runs)} run(s)")
        print(format_report(summary, len(runs)))
    return 0
