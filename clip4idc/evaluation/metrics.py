"""Evaluation metrics for image difference captioning: captioning, CLEVR-Change subsets, retrieval, pointing.

Captioning scores come from pycocoevalcap, used exactly the way ``pycocoevalcap.eval.COCOEvalCap`` uses it
(PTB tokenizer, then ``Bleu(4)``, ``Meteor``, ``Rouge``, ``Cider`` on the tokenized captions), so the numbers
equal COCOEvalCap's. They are floats on pycocoevalcap's native scale: BLEU/METEOR/ROUGE-L/SPICE in [0, 1] and
CIDEr typically in [0, ~5]; papers multiply by 100 (CIDEr 1.5 here is "150" in a paper table).

Decisions, documented once here:

* Missing predictions for referenced pairs raise :class:`Clip4idcError` listing a few missing ids; extra
  predictions (ids with no references) are ignored with a :class:`UserWarning` - prediction files often cover
  a larger split than the ground truth being scored.
* Empty or whitespace-only captions never reach the Java tokenizer (it would drop the line and misalign every
  caption after it); they score as the empty string. Empty reference captions are dropped with a warning; a
  pair left without references is an error. Line breaks inside captions become spaces, as COCOEvalCap does.
* SPICE runs only when the Stanford CoreNLP 3.6.0 jars are already on disk (see :func:`find_spice_lib`);
  nothing is ever downloaded. Otherwise ``SPICE`` is ``None`` and ``SPICE_status`` says why.
* One METEOR Java process (about 1 GB, several seconds to start) is kept for the life of the Python process
  and reused by every call; it is closed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import warnings
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from ..data.readers import CHANGE_TYPES
from ..errors import Clip4idcError

__all__ = [
    "CAPTION_METRICS",
    "CORENLP_JARS",
    "SPICE_ENV",
    "coco_gt_to_references",
    "find_spice_lib",
    "per_sample_records",
    "score_captions",
    "score_captions_detailed",
    "score_clevr_change",
]

CAPTION_METRICS = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
SPICE_ENV = "CLIP4IDC_SPICE_LIB"
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")

# Characters the Java tokenizer (or Python's splitlines) treats as line ends: each would split one caption
# into two lines and shift every later caption onto the wrong pair.
_LINE_BREAKS = re.compile(r"[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


# ----------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------


def _few(ids: Sequence[str], k: int = 5) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:k])
    return shown + (", ..." if len(ids) > k else "")


def _normalise_references(references: Mapping[Any, Any]) -> dict[str, list[str]]:
    if not isinstance(references, Mapping):
        raise Clip4idcError(
            f"references must be a dict pair_id -> list of captions, got {type(references).__name__}"
        )
    out: dict[str, list[str]] = {}
    dropped = 0
    for key, caps in references.items():
        pid = str(key)
        if pid in out:
            raise Clip4idcError(
                f"pair id {pid!r} appears twice in the references (after converting ids to str)"
            )
        if isinstance(caps, str):
            caps = [caps]
        if not isinstance(caps, Sequence) or not all(isinstance(c, str) for c in caps):
            raise Clip4idcError(f"references for pair {pid!r} must be a list of strings")
        kept = [c for c in caps if _LINE_BREAKS.sub(" ", c).strip()]
        dropped += len(caps) - len(kept)
        if not kept:
            raise Clip4idcError(f"pair {pid!r} has no non-empty reference caption")
        out[pid] = kept
    if not out:
        raise Clip4idcError("no reference pairs to score")
    if dropped:
        warnings.warn(f"dropped {dropped} empty reference caption(s)", UserWarning, stacklevel=3)
    return out


def _normalise_predictions(predictions: Mapping[Any, Any], ref_ids: Sequence[str]) -> dict[str, str]:
    if not isinstance(predictions, Mapping):
        raise Clip4idcError(
            f"predictions must be a dict pair_id -> caption, got {type(predictions).__name__}"
        )
    preds: dict[str, str] = {}
    for key, cap in predictions.items():
        pid = str(key)
        if pid in preds:
            raise Clip4idcError(
                f"pair id {pid!r} appears twice in the predictions (after converting ids to str)"
            )
        if cap is None:
            cap = ""
        if not isinstance(cap, str):
            raise Clip4idcError(f"prediction for pair {pid!r} must be a string, got {type(cap).__name__}")
        preds[pid] = cap
    missing = [pid for pid in ref_ids if pid not in preds]
    if missing:
        raise Clip4idcError(
            f"predictions missing for {len(missing)} of {len(ref_ids)} reference pairs, e.g. {_few(missing)}"
        )
    ref_set = set(ref_ids)
    extra = [pid for pid in preds if pid not in ref_set]
    if extra:
        warnings.warn(
            f"ignoring {len(extra)} prediction(s) with no references, e.g. {_few(extra)}",
            UserWarning,
            stacklevel=3,
        )
    return {pid: preds[pid] for pid in ref_ids}


# ----------------------------------------------------------------------------------------------------------
# Java-backed pieces: tokenizer, METEOR, SPICE
# ----------------------------------------------------------------------------------------------------------


def _java_error(err: OSError, what: str) -> Clip4idcError:
    if isinstance(err, FileNotFoundError):
        return Clip4idcError(f"{what} needs Java: 'java' was not found on PATH")
    return Clip4idcError(f"{what} failed: {err}")


@contextlib.contextmanager
def _java_stderr() -> Iterator[Callable[[], str]]:
    """Send what a Java child writes to this process's stderr (the PTB tokenizer's "PTBTokenizer tokenized
    N tokens at ..." on every call) to a temporary file: pycocoevalcap gives the child our stderr, where it
    is noise in a terminal and a red line per call in a notebook. Yields a function that reads it back, for
    an error message."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: (sink.seek(0), sink.read().decode("utf-8", "replace"))[1]
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _ptb_tokenize(captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """PTB-tokenize every caption in one Java call, the COCOEvalCap way, keeping empty captions aligned.

    Each non-empty caption is sent under its own key so that an empty one can never shift the others.
    """
    todo: dict[tuple[Hashable, int], list[dict[str, str]]] = {}
    out: dict[Hashable, list[str]] = {}
    for key, caps in captions.items():
        out[key] = [""] * len(caps)
        for i, cap in enumerate(caps):
            clean = _LINE_BREAKS.sub(" ", cap)
            if clean.strip():
                todo[(key, i)] = [{"caption": clean}]
    if not todo:
        return out
    with _java_stderr() as chatter:
        try:
            tokenized = PTBTokenizer().tokenize(todo)
        except OSError as err:
            raise _java_error(err, "the PTB tokenizer") from None
    if len(tokenized) != len(todo):
        said = chatter().strip().splitlines()
        raise RuntimeError(
            f"PTB tokenizer returned {len(tokenized)} captions for {len(todo)} inputs"
            + (f" ({said[-1]})" if said else "")
        )
    for (key, i), toks in tokenized.items():
        out[key][i] = toks[0]
    return out


_METEOR_LOCK = threading.Lock()
_meteor: Meteor | None = None


def _close_meteor() -> None:
    """Stop the shared METEOR process (registered with atexit; safe to call any time)."""
    global _meteor
    inst, _meteor = _meteor, None
    if inst is None:
        return
    # Meteor.__del__ takes its internal lock; give it a fresh one in case a failed call left it held.
    inst.lock = threading.Lock()
    proc = inst.meteor_p
    try:
        proc.stdin.close()
    except OSError:
        pass
    proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


atexit.register(_close_meteor)


def _meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    """``Meteor().compute_score`` on a process shared across calls (starting one costs seconds and ~1 GB)."""
    global _meteor
    with _METEOR_LOCK:
        if _meteor is None or _meteor.meteor_p.poll() is not None:
            _close_meteor()
            try:
                _meteor = Meteor()
            except OSError as err:
                raise _java_error(err, "METEOR") from None
        try:
            score, scores = _meteor.compute_score(gts, res)
        except BaseException:
            _close_meteor()
            raise
    return float(score), [float(s) for s in scores]


def _installed_spice_dir() -> Path:
    import pycocoevalcap.spice.spice as spice_module

    return Path(spice_module.__file__).resolve().parent


def _has_jars(folder: Path) -> bool:
    return all((folder / name).is_file() for name in CORENLP_JARS)


def find_spice_lib(spice: str | os.PathLike[str] | bool | None = None) -> tuple[Path | None, str]:
    """Locate the Stanford CoreNLP 3.6.0 jars SPICE needs, without downloading anything.

    ``spice`` is ``False`` (SPICE off), a folder holding both jars (an error if they are not there), ``True``
    (SPICE required: an error if no jars are found) or ``None`` (automatic). Automatic and ``True`` look in
    the folder named by the ``CLIP4IDC_SPICE_LIB`` environment variable if set, else in the installed
    ``pycocoevalcap/spice/lib``. Returns ``(folder, "ok")`` or ``(None, "unavailable: <why>")``.
    """
    needed = " and ".join(CORENLP_JARS)
    if spice is False:
        return None, "unavailable: SPICE disabled by the caller"
    if spice is not None and spice is not True:
        folder = Path(spice).expanduser()
        if not folder.is_dir():
            raise Clip4idcError(f"{folder}: SPICE library folder not found")
        if not _has_jars(folder):
            raise Clip4idcError(f"{folder}: SPICE library folder lacks {needed}")
        return folder, "ok"
    env = os.environ.get(SPICE_ENV)
    if env:
        folder = Path(env).expanduser()
        if _has_jars(folder):
            status: tuple[Path | None, str] = (folder, "ok")
        else:
            status = (None, f"unavailable: {SPICE_ENV}={env} does not hold {needed}")
    else:
        folder = _installed_spice_dir() / "lib"
        if _has_jars(folder):
            status = (folder, "ok")
        else:
            status = (None, f"unavailable: {needed} not installed (set {SPICE_ENV} to a folder holding them)")
    if spice is True and status[0] is None:
        raise Clip4idcError(f"SPICE required but {status[1]}")
    return status


def _run_spice(
    lib: Path, ids: Sequence[str], gts: Mapping[str, list[str]], res: Mapping[str, str]
) -> tuple[dict[str, float] | None, str]:
    """Run ``spice-1.0.jar`` directly with a classpath that includes ``lib`` (pycocoevalcap's wrapper would
    try to download the jars). Returns per-pair SPICE F-scores or ``(None, "failed: ...")``."""
    spice_dir = _installed_spice_dir()
    jar = spice_dir / "spice-1.0.jar"
    if not jar.is_file():
        return None, f"unavailable: {jar} not found"
    classpath = [jar, *sorted((spice_dir / "lib").glob("*.jar")), *(lib / name for name in CORENLP_JARS)]
    with tempfile.TemporaryDirectory(prefix="clip4idc-spice-") as tmp:
        in_path, out_path = Path(tmp) / "input.json", Path(tmp) / "output.json"
        data = [{"image_id": k, "test": res[pid], "refs": gts[pid]} for k, pid in enumerate(ids)]
        in_path.write_text(json.dumps(data), encoding="utf-8")
        cmd = [
            "java",
            "-Xmx8G",
            "-cp",
            os.pathsep.join(str(p) for p in classpath),
            "edu.anu.spice.SpiceScorer",
        ]
        cmd += [str(in_path), "-out", str(out_path), "-subset", "-silent"]
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        except OSError as err:
            return None, f"failed: {err}"
        if proc.returncode != 0 or not out_path.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"failed: SPICE exited with {proc.returncode}: {tail}"
        results = json.loads(out_path.read_text(encoding="utf-8"))

    def as_float(value: Any) -> float:
        try:
            return float(value)
        except (TypeError, ValueError):
            return float("nan")

    by_index = {int(item["image_id"]): as_float(item["scores"]["All"]["f"]) for item in results}
    return {pid: by_index.get(k, float("nan")) for k, pid in enumerate(ids)}, "ok"


# ----------------------------------------------------------------------------------------------------------
# Caption scoring
# ----------------------------------------------------------------------------------------------------------


class _Tokenized:
    """Tokenized references and predictions (plus optional per-pair SPICE) shared by several subsets."""

    def __init__(self, ids: list[str], gts: dict[str, list[str]], res: dict[str, str]) -> None:
        self.ids = ids
        self.gts = gts
        self.res = res
        self.spice: dict[str, float] | None = None
        self.spice_status = "unavailable: not requested"


def _tokenize_pairs(
    predictions: Mapping[Any, Any], references: Mapping[Any, Any], spice: str | os.PathLike[str] | bool | None
) -> _Tokenized:
    refs = _normalise_references(references)
    ids = list(refs)
    preds = _normalise_predictions(predictions, ids)
    lib, status = find_spice_lib(spice)
    both: dict[Hashable, Sequence[str]] = {("gts", pid): refs[pid] for pid in ids}
    both.update({("res", pid): [preds[pid]] for pid in ids})
    tok = _ptb_tokenize(both)
    data = _Tokenized(
        ids, {pid: tok[("gts", pid)] for pid in ids}, {pid: tok[("res", pid)][0] for pid in ids}
    )
    data.spice_status = status
    if lib is not None:
        data.spice, data.spice_status = _run_spice(lib, ids, data.gts, data.res)
    return data


def _score_subset(data: _Tokenized, ids: Sequence[str]) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Score ``ids`` with the COCOEvalCap scorers; CIDEr's IDF comes from exactly these pairs' references."""
    gts = {pid: data.gts[pid] for pid in ids}
    res = {pid: [data.res[pid]] for pid in ids}
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    meteor, meteor_each = _meteor_score(gts, res)
    rouge, rouge_each = Rouge().compute_score(gts, res)
    cider, cider_each = Cider().compute_score(gts, res)
    metrics: dict[str, Any] = {f"BLEU_{n + 1}": float(bleu[n]) for n in range(4)}
    metrics.update(METEOR=float(meteor), ROUGE_L=float(rouge), CIDEr=float(cider), SPICE=None)
    per_sample: dict[str, dict[str, float]] = {}
    for k, pid in enumerate(ids):
        row = {f"BLEU_{n + 1}": float(bleu_each[n][k]) for n in range(4)}
        row.update(METEOR=meteor_each[k], ROUGE_L=float(rouge_each[k]), CIDEr=float(cider_each[k]))
        per_sample[pid] = row
    if data.spice is not None:
        values = [data.spice[pid] for pid in ids]
        metrics["SPICE"] = float(np.mean(values))
        for pid, value in zip(ids, values):
            per_sample[pid]["SPICE"] = value
    metrics["SPICE_status"] = data.spice_status
    return metrics, per_sample


def score_captions_detailed(
    predictions: Mapping[Any, str],
    references: Mapping[Any, Sequence[str]],
    spice: str | os.PathLike[str] | bool | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Score ``{pair_id: caption}`` against ``{pair_id: [reference, ...]}``; also return per-pair scores.

    Returns ``(metrics, per_sample)``: ``metrics`` has ``BLEU_1..4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``,
    ``SPICE`` (``None`` unless run) and ``SPICE_status``; ``per_sample[pair_id]`` has the same metrics for
    one pair (the per-pair CIDEr is what error analysis sorts by). Ids are compared as strings. ``spice``: see
    :func:`find_spice_lib`.
    """
    data = _tokenize_pairs(predictions, references, spice)
    return _score_subset(data, data.ids)


def score_captions(
    predictions: Mapping[Any, str],
    references: Mapping[Any, Sequence[str]],
    spice: str | os.PathLike[str] | bool | None = None,
) -> dict[str, Any]:
    """Corpus-level caption metrics, equal to ``COCOEvalCap``'s (see :func:`score_captions_detailed`)."""
    return score_captions_detailed(predictions, references, spice)[0]


def per_sample_records(
    predictions: Mapping[Any, str],
    references: Mapping[Any, Sequence[str]],
    per_sample: Mapping[str, Mapping[str, float]],
) -> dict[str, dict[str, Any]]:
    """``{pair_id: {"caption", "references", <per-pair metrics>}}`` - the predictions file for error analysis."""
    preds = {str(k): v for k, v in predictions.items()}
    refs = {str(k): list(v) for k, v in references.items()}
    return {
        pid: {"caption": preds.get(pid, ""), "references": refs.get(pid, []), **dict(row)}
        for pid, row in per_sample.items()
    }


def coco_gt_to_references(gt: Mapping[str, Any]) -> dict[str, list[str]]:
    """COCO caption ground truth (``{"images": [{"id"}], "annotations": [{"image_id", "caption"}]}``) to
    ``{pair_id: [captions]}`` with ids as strings, in the order of ``images`` (or first appearance).

    Like COCOEvalCap, ``images`` (when present) defines the pairs scored; an image without captions or a
    caption for an unlisted image is an error rather than a silently different evaluation.
    """
    if not isinstance(gt, Mapping):
        raise Clip4idcError(f"ground truth must be a COCO-format object, got {type(gt).__name__}")
    anns = gt.get("annotations")
    if not isinstance(anns, list):
        raise Clip4idcError("ground truth has no 'annotations' list")
    refs: dict[str, list[str]] = {}
    images = gt.get("images")
    if images is not None:
        if not isinstance(images, list):
            raise Clip4idcError("ground truth 'images' must be a list")
        for k, img in enumerate(images):
            if not isinstance(img, Mapping) or "id" not in img:
                raise Clip4idcError(f"images[{k}] has no 'id'")
            refs.setdefault(str(img["id"]), [])
    for k, ann in enumerate(anns):
        if not isinstance(ann, Mapping) or "image_id" not in ann or "caption" not in ann:
            raise Clip4idcError(f"annotations[{k}] needs 'image_id' and 'caption'")
        if not isinstance(ann["caption"], str):
            raise Clip4idcError(f"annotations[{k}] caption must be a string")
        pid = str(ann["image_id"])
        if images is not None and pid not in refs:
            raise Clip4idcError(f"annotations[{k}] refers to image_id {pid!r} which is not in 'images'")
        refs.setdefault(pid, []).append(ann["caption"])
    empty = [pid for pid, caps in refs.items() if not caps]
    if empty:
        raise Clip4idcError(f"{len(empty)} image(s) have no captions, e.g. {_few(empty)}")
    if not refs:
        raise Clip4idcError("ground truth has no annotations")
    return refs


def score_clevr_change(
    predictions: Mapping[Any, str],
    references: Mapping[Any, Sequence[str]],
    change_types: Mapping[Any, str],
    spice: str | os.PathLike[str] | bool | None = None,
) -> dict[str, dict[str, Any] | None]:
    """CLEVR-Change protocol: score ``total`` (all pairs), ``change``, ``no_change`` and each change type.

    A pair is no-change when its id ends with ``_n`` or ``change_types`` maps it to ``"no_change"``; every
    other pair needs its type in ``change_types``. Each subset is scored on its own (CIDEr's IDF depends on
    the references scored, as in the official evaluation). Keys ``color``, ``material``, ``add``, ``drop``,
    ``move`` are always present (``None`` when no pair has that type); other types get their own keys. Each
    metrics dict also carries ``num_pairs``.
    """
    all_ids = [str(k) for k in references]
    types = {str(k): v for k, v in change_types.items()}
    groups: dict[str, list[str]] = defaultdict(list)
    untyped: list[str] = []
    for pid in all_ids:
        typ = types.get(pid)
        if pid.endswith("_n") or typ == "no_change":
            if typ not in (None, "no_change"):
                raise Clip4idcError(f"pair {pid!r} ends with '_n' (no change) but its change type is {typ!r}")
            groups["no_change"].append(pid)
        elif typ is None:
            untyped.append(pid)
        else:
            groups[typ].append(pid)
    if untyped:
        raise Clip4idcError(f"no change type for {len(untyped)} change pair(s), e.g. {_few(untyped)}")
    data = _tokenize_pairs(predictions, references, spice)
    no_change = set(groups["no_change"])
    change_ids = [pid for pid in data.ids if pid not in no_change]
    subsets: dict[str, list[str]] = {
        "total": data.ids,
        "change": change_ids,
        "no_change": groups["no_change"],
    }
    for typ in (
        *CHANGE_TYPES,
        *sorted(t for t in groups if t not in CHANGE_TYPES and t != "no_change"),
    ):
        subsets[typ] = groups.get(typ, [])
    out: dict[str, dict[str, Any] | None] = {}
    for name, ids in subsets.items():
        if not ids:
            out[name] = None
            continue
        metrics, _ = _score_subset(data, ids)
        metrics["num_pairs"] = len(ids)
        out[name] = metrics
    return out
