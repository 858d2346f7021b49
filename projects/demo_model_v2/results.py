"""The model card's tables from ``clip4idc eval`` outputs: each group of runs (seeds of one recipe) as its
mean and its spread (min-max), side by side, then the first run's per-type and attribute rows.

    python projects/demo_model_v2/results.py runs/v2_eval runs/v2_eval_seed2 -- runs/v2_eval_ablation ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from clip4idc.data.readers import CHANGE_TYPES

ROWS = {  # label -> how to read it from metrics.json
    "CIDEr": lambda m: m["CIDEr"],
    "BLEU-4": lambda m: m["BLEU_4"],
    "METEOR": lambda m: m["METEOR"],
    "ROUGE-L": lambda m: m["ROUGE_L"],
    "type named, change pairs (%)": lambda m: m["type_accuracy_change"],
    "type named, worst type (%)": lambda m: min(m["type_accuracy_detail"][t] for t in CHANGE_TYPES),
    "type named, no-change pairs (%)": lambda m: m["type_accuracy_no_change"],
    "shape named right (%)": lambda m: m["attribute_accuracy"]["shape"]["correct"],
    "pointing game (%)": lambda m: m["pointing_game"],
    "R@1 text->pair (%)": lambda m: m["R@1"],
    "R@1 / ceiling (%)": lambda m: 100 * m["R@1"] / m["retrieval_ceiling"]["R@1"],
}


def read(run: str) -> dict:
    path = Path(run) / "metrics.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        sys.exit(f"{path}: cannot read it ({err.__class__.__name__}: {err})")


def value(metrics: dict, label: str) -> float | None:
    try:
        return float(ROWS[label](metrics))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def summary(runs: list[dict], label: str) -> str:
    values = [v for v in (value(m, label) for m in runs) if v is not None]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    digits = 3 if abs(mean) < 10 else 1
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main(argv: list[str]) -> None:
    groups, current = [], []
    for arg in argv:
        if arg == "--":
            groups.append(current)
            current = []
        else:
            current.append(arg)
    groups.append(current)
    loaded = [[read(r) for r in group] for group in groups if group]
    names = [", ".join(Path(r).name for r in group) for group in groups if group]
    print("| | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for label in ROWS:
        print(f"| {label} | " + " | ".join(summary(runs, label) for runs in loaded) + " |")
    first = loaded[0][0]
    print(f"\nper change type ({names[0].split(',')[0]}):\n")
    print("| change type | pairs | CIDEr | type named | R@1 | pointing game |")
    print("| --- | --- | --- | --- | --- | --- |")
    for typ, row in (first.get("per_type") or {}).items():
        cells = [row.get("num_pairs"), row.get("CIDEr"), row.get("type_accuracy"), row.get("R@1"),
                 row.get("pointing_game")]  # fmt: skip
        print(f"| {typ} | " + " | ".join("–" if c is None else f"{c:.3g}" for c in cells) + " |")
    print("\nattributes named right (% of captions naming each):\n")
    for attr, stats in (first.get("attribute_accuracy") or {}).items():
        print(f"- {attr}: {stats.get('correct')} of {stats.get('named')} named; said {stats.get('said')}")


if __name__ == "__main__":
    main(sys.argv[1:])
