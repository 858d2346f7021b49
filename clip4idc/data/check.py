"""``clip4idc data check``: validate a dataset folder and summarise it.

Every problem is one line ``<file>: <what is wrong>`` (missing image, id without captions, malformed JSON,
unreadable image, ...), so a user can fix them one by one; the summary gives pairs per split, captions per
pair and pairs per change type.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import fail
from .readers import CHANGE_TYPES, LOADERS, SPLITS, Pair


@dataclass
class CheckReport:
    dataset: str
    root: Path
    pairs: dict[str, list[Pair]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    images_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"{self.dataset} dataset at {self.root}"]
        lines.append(f"  {'split':<6} {'pairs':>7} {'change':>7} {'no-change':>9}")
        for split, pairs in self.pairs.items():
            nc = sum(p.change_type == "no_change" for p in pairs)
            lines.append(f"  {split:<6} {len(pairs):>7} {len(pairs) - nc:>7} {nc:>9}")
        every = [p for ps in self.pairs.values() for p in ps]
        for label, group in (
            (
                "change pairs" if self.dataset == "clevr" else "pairs",
                [p for p in every if p.change_type != "no_change"],
            ),
            ("no-change pairs", [p for p in every if p.change_type == "no_change"]),
        ):
            if group:
                counts = [len(p.captions) for p in group]
                lines.append(
                    f"captions per {label[:-1]}: min {min(counts)}, mean {sum(counts) / len(counts):.1f}, max {max(counts)}"
                )
        types = Counter(p.change_type for p in every if p.change_type in CHANGE_TYPES)
        if types:
            lines.append(
                "pairs per change type: " + ", ".join(f"{t} {types.get(t, 0)}" for t in CHANGE_TYPES)
            )
        lines.append(f"images checked: {self.images_checked}")
        lines.append("no problems" if self.ok else f"{len(self.problems)} problem(s):")
        return "\n".join(lines)


def _image_problem(path: Path, verify: bool) -> str | None:
    if not path.exists():
        return "missing image"
    if not path.is_file():
        return "not a file"
    if not verify:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.verify()
    except Exception as err:  # noqa: BLE001 - any decoder failure means "unreadable"
        return f"unreadable image ({type(err).__name__}: {err})"
    return None


def check_dataset(root: str | Path, dataset: str, verify_images: bool = True) -> CheckReport:
    """Read every split leniently, then check that every referenced image exists and decodes."""
    if dataset not in LOADERS:
        raise fail(dataset, f"unknown dataset (expected one of {', '.join(LOADERS)})")
    root = Path(root)
    report = CheckReport(dataset, root)
    raw: list[str] = []
    for split in SPLITS:
        report.pairs[split] = LOADERS[dataset](root, split, problems=raw)
    seen: set[Path] = set()
    for split, pairs in report.pairs.items():
        for p in pairs:
            for path in (p.before, p.after, p.distractor):
                if path is None or path in seen:
                    continue
                seen.add(path)
                problem = _image_problem(path, verify_images)
                if problem:
                    raw.append(f"{path}: {problem} (pair {p.pair_id}, {split})")
    report.images_checked = len(seen)
    report.problems = list(dict.fromkeys(raw))  # the same problem seen from several splits: once
    return report
