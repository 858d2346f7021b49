"""Readers for the three IDC datasets in their official layouts → a flat list of :class:`Pair`.

Every reader takes an optional ``problems`` list: when given, each problem is appended as one line
``<file>: <what is wrong>`` and reading goes on (``clip4idc data check``); when absent the first problem
raises :class:`Clip4idcError` (training and evaluation).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Clip4idcError, fail

CHANGE_TYPES = ("color", "material", "add", "drop", "move")
DATASETS = ("clevr", "spot", "ier")
SPLITS = ("train", "val", "test")


@dataclass
class Pair:
    """One before/after image pair with all its reference captions.

    ``change_type`` is one of :data:`CHANGE_TYPES`, ``"no_change"`` or ``""`` (unknown: Spot-the-Diff, IER).
    For CLEVR-Change change pairs, ``distractor`` is the nonsemantic (camera/light jitter only) image and
    ``distractor_captions`` its no-change captions, so training can use them without a second lookup.
    """

    pair_id: str
    before: Path
    after: Path
    captions: list[str]
    change_type: str = ""
    scene_id: str = ""
    distractor: Path | None = None
    distractor_captions: list[str] = field(default_factory=list)


class _Problems:
    """Collect problems (check mode) or raise the first one (load mode)."""

    def __init__(self, sink: list[str] | None) -> None:
        self.sink = sink

    def __call__(self, path: object, problem: str) -> None:
        if self.sink is None:
            raise fail(path, problem)
        self.sink.append(f"{path}: {problem}")


def read_json(path: Path, report: _Problems, required: bool = True) -> Any:
    """Parse a JSON file; a missing or malformed file is reported and gives None."""
    if not path.exists():
        if required:
            report(path, "file not found")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        report(path, f"malformed JSON ({err})")
        return None


def _check_root(root: Path) -> None:
    if not root.exists():
        raise fail(root, "dataset folder not found")
    if not root.is_dir():
        raise fail(root, "not a folder")


def _captions(value: Any) -> list[str] | None:
    """A caption list as stored (list of strings, or a single string); None when malformed."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        return None
    return [c.strip() for c in value if c.strip()]


# --------------------------------------------------------------------------------------------- CLEVR
CLEVR_BEFORE = "images/CLEVR_default_%06d.png"
CLEVR_AFTER = "sc_images/CLEVR_semantic_%06d.png"
CLEVR_DISTRACTOR = "nsc_images/CLEVR_nonsemantic_%06d.png"


def _int_id(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 0 and str(value).strip().lstrip("0") in ("", str(n)) else None


def clevr_type_of(root: Path, report: _Problems) -> dict[int, str]:
    """Scene id → change type from ``type_mapping.json`` (ids may be ints or strings)."""
    path = root / "type_mapping.json"
    data = read_json(path, report)
    out: dict[int, str] = {}
    if data is None:
        return out
    if not isinstance(data, dict):
        report(path, "expected an object mapping change type to a list of ids")
        return out
    for ctype, ids in data.items():
        if ctype not in CHANGE_TYPES:
            report(path, f"unknown change type {ctype!r} (expected one of {', '.join(CHANGE_TYPES)})")
            continue
        if not isinstance(ids, list):
            report(path, f"ids of {ctype!r} are not a list")
            continue
        for raw in ids:
            n = _int_id(raw)
            if n is None:
                report(path, f"bad id {raw!r} under {ctype!r}")
            elif n in out and out[n] != ctype:
                report(path, f"id {n} listed under both {out[n]!r} and {ctype!r}")
            else:
                out[n] = ctype
    return out


def clevr_split_ids(root: Path, split: str, report: _Problems) -> dict[str, list[int]]:
    """``splits.json`` → ``{split: ids}`` for the requested split (``"all"`` for every split)."""
    path = root / "splits.json"
    data = read_json(path, report)
    if data is None:
        return {}
    if not isinstance(data, dict):
        report(path, "expected an object with train/val/test id lists")
        return {}
    wanted = list(data) if split == "all" else [split]
    out: dict[str, list[int]] = {}
    for name in wanted:
        if name not in data:
            report(path, f"no {name!r} split")
            continue
        ids = data[name]
        if not isinstance(ids, list):
            report(path, f"split {name!r} is not a list of ids")
            continue
        good = []
        for raw in ids:
            n = _int_id(raw)
            if n is None:
                report(path, f"bad id {raw!r} in split {name!r}")
            else:
                good.append(n)
        out[name] = good
    return out


def load_clevr(root: str | Path, split: str = "test", problems: list[str] | None = None) -> list[Pair]:
    """CLEVR-Change: for each scene id ``n`` the change pair ``"n"`` and the no-change pair ``"n_n"``."""
    root = Path(root)
    _check_root(root)
    report = _Problems(problems)
    splits = clevr_split_ids(root, split, report)
    ccap_path, ncap_path = root / "change_captions.json", root / "no_change_captions.json"
    change_caps = read_json(ccap_path, report) or {}
    nochange_caps = read_json(ncap_path, report) or {}
    for path, data in ((ccap_path, change_caps), (ncap_path, nochange_caps)):
        if not isinstance(data, dict):
            report(path, "expected an object mapping image file names to caption lists")
    change_caps = change_caps if isinstance(change_caps, dict) else {}
    nochange_caps = nochange_caps if isinstance(nochange_caps, dict) else {}
    types = (
        clevr_type_of(root, report) if (root / "type_mapping.json").exists() or problems is not None else {}
    )
    pairs: list[Pair] = []
    for ids in splits.values():
        for n in ids:
            key = Path(CLEVR_BEFORE % n).name
            before, after, distractor = (
                root / (CLEVR_BEFORE % n),
                root / (CLEVR_AFTER % n),
                root / (CLEVR_DISTRACTOR % n),
            )
            caps = _captions(change_caps.get(key)) if key in change_caps else None
            ncaps = _captions(nochange_caps.get(key)) if key in nochange_caps else None
            if key not in change_caps:
                report(ccap_path, f"id {n} ({key}) has no change captions")
            elif not caps:
                report(ccap_path, f"id {n} ({key}) has an empty or malformed caption list")
            if key not in nochange_caps:
                report(ncap_path, f"id {n} ({key}) has no no-change captions")
            elif not ncaps:
                report(ncap_path, f"id {n} ({key}) has an empty or malformed caption list")
            if types and n not in types and problems is not None:
                report(root / "type_mapping.json", f"id {n} has no change type")
            pairs.append(
                Pair(str(n), before, after, caps or [], types.get(n, ""), str(n), distractor, ncaps or [])
            )
            pairs.append(Pair(f"{n}_n", before, distractor, ncaps or [], "no_change", str(n)))
    return pairs


# ------------------------------------------------------------------------------------- Spot-the-Diff
def merge_spot_annotations(
    entries: Any, path: Path | str = "annotations", problems: list[str] | None = None
) -> list[dict]:
    """Raw Spot-the-Diff annotations (one entry per annotator, possibly several per pair) → one entry per
    pair ``{"img_id", "sentences"}``, sentences in file order, stripped, empty and repeated ones dropped."""
    report = _Problems(problems)
    if not isinstance(entries, list):
        report(path, "expected a list of {img_id, sentences} entries")
        return []
    merged: dict[str, list[str]] = defaultdict(list)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "img_id" not in entry:
            report(path, f"entry {i} has no img_id")
            continue
        sents = entry.get("sentences", [])
        caps = _captions(sents)
        if caps is None:
            report(path, f"entry {i} (img_id {entry['img_id']}) has malformed sentences")
            continue
        bucket = merged[str(entry["img_id"])]
        bucket.extend(c for c in caps if c not in bucket)
    return [{"img_id": k, "sentences": v} for k, v in merged.items()]


def merge_spot_file(path: str | Path) -> list[dict]:
    """Read one raw Spot-the-Diff annotation file and merge it per pair (raises on any problem)."""
    path = Path(path)
    return merge_spot_annotations(read_json(path, _Problems(None)), path)


def _spot_annotations(root: Path, split: str, report: _Problems) -> tuple[Path, list[dict]]:
    """The merged ``reformat_<split>.json`` if present, else the raw ``annotations/<split>.json`` merged."""
    for cand in (root / f"reformat_{split}.json", root / "annotations" / f"reformat_{split}.json"):
        if cand.exists():
            data = read_json(cand, report)
            if data is None:
                return cand, []
            return cand, merge_spot_annotations(data, cand, report.sink) if isinstance(data, list) else _bad(
                cand, report
            )
    for cand in (root / "annotations" / f"{split}.json", root / "data" / "annotations" / f"{split}.json"):
        if cand.exists():
            data = read_json(cand, report)
            return cand, [] if data is None else merge_spot_annotations(data, cand, report.sink)
    missing = root / f"reformat_{split}.json"
    report(missing, f"file not found (nor annotations/{split}.json)")
    return missing, []


def _bad(path: Path, report: _Problems) -> list:
    report(path, "expected a list of {img_id, sentences} entries")
    return []


def _image_dir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return root


def load_spot(root: str | Path, split: str = "test", problems: list[str] | None = None) -> list[Pair]:
    """Spot-the-Diff: images ``{id}.png`` and ``{id}_2.png``; one pair per ``img_id``."""
    root = Path(root)
    _check_root(root)
    report = _Problems(problems)
    images = _image_dir(root, ("images", "resized_images"))
    pairs = []
    for name in SPLITS if split == "all" else (split,):
        path, entries = _spot_annotations(root, name, report)
        for e in entries:
            pid = e["img_id"]
            if not e["sentences"]:
                report(path, f"img_id {pid} has no sentences")
            pairs.append(Pair(pid, images / f"{pid}.png", images / f"{pid}_2.png", e["sentences"], "", ""))
    return pairs


# ------------------------------------------------------------------------------ Image Editing Request
IER_SPLIT_FILES = {
    "train": ("train.json",),
    "val": ("val.json", "valid.json", "dev.json"),
    "test": ("test.json",),
}


def load_ier(root: str | Path, split: str = "test", problems: list[str] | None = None) -> list[Pair]:
    """Image Editing Request: ``<split>.json`` lists ``{img0, img1, sents, uid}``; images in ``images/``."""
    root = Path(root)
    _check_root(root)
    report = _Problems(problems)
    images = _image_dir(root, ("images",))
    pairs = []
    for name in SPLITS if split == "all" else (split,):
        files = IER_SPLIT_FILES.get(name, (f"{name}.json",))
        path = next((root / f for f in files if (root / f).exists()), root / files[0])
        data = read_json(path, report)
        if data is None:
            continue
        if not isinstance(data, list):
            report(path, "expected a list of {img0, img1, sents, uid} entries")
            continue
        for i, e in enumerate(data):
            if not isinstance(e, dict) or not all(k in e for k in ("img0", "img1", "sents")):
                report(path, f"entry {i} lacks img0, img1 or sents")
                continue
            caps = _captions(e["sents"])
            uid = str(e.get("uid", i))
            if caps is None:
                report(path, f"uid {uid} has malformed sents")
                caps = []
            elif not caps:
                report(path, f"uid {uid} has no sentences")
            pairs.append(
                Pair(uid, _ier_image(root, images, e["img0"]), _ier_image(root, images, e["img1"]), caps)
            )
    return pairs


def _ier_image(root: Path, images: Path, name: str) -> Path:
    p = images / name
    return p if p.exists() or not (root / name).exists() else root / name


# ------------------------------------------------------------------------------------------- dispatch
LOADERS = {"clevr": load_clevr, "spot": load_spot, "ier": load_ier}


def load_pairs(root: str | Path, dataset: str, split: str = "test") -> list[Pair]:
    """All pairs of one split (``train``/``val``/``test``, or ``all``) of a dataset in its official layout."""
    if dataset not in LOADERS:
        raise fail(dataset, f"unknown dataset (expected one of {', '.join(DATASETS)})")
    return LOADERS[dataset](root, split)


def detect_dataset(root: str | Path) -> str:
    """Guess the dataset kind from the files in ``root``."""
    root = Path(root)
    _check_root(root)
    if (root / "splits.json").exists() or (root / "change_captions.json").exists():
        return "clevr"
    if any(root.glob("reformat_*.json")) or (root / "annotations").is_dir():
        return "spot"
    if any((root / f).exists() for files in IER_SPLIT_FILES.values() for f in files):
        return "ier"
    raise fail(root, "cannot tell the dataset kind; pass dataset='clevr'|'spot'|'ier'")


def first_scenes(pairs: list[Pair], n: int) -> list[Pair]:
    """The pairs of the first ``n`` scenes, for quick runs: a CLEVR-Change pair and its no-change twin
    count as one scene and stay together."""
    keep, seen = [], set()
    for p in pairs:
        scene = p.scene_id or p.pair_id
        if scene not in seen and len(seen) >= n:
            continue
        seen.add(scene)
        keep.append(p)
    return keep


def scene_id_of(pair: Any) -> str | None:
    """A pair reference → scene id, or ``None`` for a no-change pair (nothing to point at).

    Accepts an int/str id (``"12"``; the readers' no-change ids ``"12_n"`` give ``None``), a CLEVR file
    name (``CLEVR_default_000012.png``), a record with ``id``/``image_id``/``pair_id``/``before``, or a
    reader ``Pair`` (its ``scene_id``)."""
    import re

    change = pair.get("change_type") if isinstance(pair, Mapping) else getattr(pair, "change_type", None)
    if change in NO_CHANGE:
        return None
    if not isinstance(pair, (str, int, Mapping)) and getattr(pair, "scene_id", None) is not None:
        return str(pair.scene_id)
    if isinstance(pair, Mapping):
        for key in ("scene_id", "id", "image_id", "pair_id", "before"):
            if key in pair:
                return scene_id_of(pair[key])
        raise Clip4idcError(f"pair record has no id: {dict(pair)}")
    text = str(pair)
    if re.fullmatch(r"\d+_n", text):
        return None
    if text.isdigit():
        return str(int(text))
    digits = re.findall(r"(\d+)", Path(text).name)
    if not digits:
        raise Clip4idcError(f"cannot tell the scene id of pair {text!r}")
    return str(int(digits[-1]))


NO_CHANGE = ("none", "no_change", "nochange", "no-change")  # spellings of "no change" in records
