"""Read the change type a caption describes, from its words, with a small set of documented keyword rules.

Why: the demo's quality gate and the error analysis ask "does the caption name the right kind of change?"
independently of n-gram overlap. The rules target CLEVR-Change's vocabulary; the labels are ``color``,
``material``, ``add``, ``drop``, ``move``, ``no_change`` and ``unknown`` (nothing matched).

Rules, tried in this order on the lower-cased words (punctuation removed):

1. **Clear no-change phrases** - "no change", "nothing has changed", "no difference", "unchanged",
   "did not change", "nothing was modified", ... -> ``no_change``.
2. **Attribute change after a change verb** - after "changed", "became", "turned", "is now", ... skip
   filler words ("to", "into", "a", "the", "its", "color", "from X to", ...) and read the first content word:
   a material word (metal, metallic, rubber, shiny, matte, ...) -> ``material``; a colour word -> ``color``.
   Only the words *after* the verb count, so "the small red rubber cube changed to metal" is ``material``
   and "the large cube that was red has changed to blue" is ``color``. Explicit "changed its color" /
   "different material" phrases decide too, and "changed the color of ..." comes first of all (the
   object's own material word may follow it).
   With "made"/"painted" the new value ends the sentence ("someone painted the big cylinder blue",
   "the ball was made matte"), so the caption's last word decides.
3. **Move** - "moved", "relocated", "shifted", "changed its location", "different location", "new position"...
4. **Drop** - "missing", "disappeared", "gone", "removed", "no longer", "taken away", ...
5. **Add** - "added", "appeared", "newly placed", "new", "placed", "put", ...
   (drop is tried before add so "the cube that was placed ... is missing" is a drop).
6. **Weak attribute evidence** - a change word ("changed", "now", "different", ...) with colour/material
   words but no clean verb phrase: the *last* such word decides (the new value usually comes last).
7. **Weak no-change words** - "same", "identical", "alike", "remains" -> ``no_change``.
8. Otherwise ``unknown``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..data.readers import CHANGE_TYPES
from ..errors import Clip4idcError

__all__ = ["CHANGE_LABELS", "classify_change", "confusion", "type_accuracy"]

CHANGE_LABELS = (*CHANGE_TYPES, "no_change")  # what a caption can name
_ALL_LABELS = (*CHANGE_LABELS, "unknown")

COLOR_WORDS = frozenset(
    "gray grey red blue green brown purple cyan yellow pink orange black white violet magenta teal".split()
)
MATERIAL_WORDS = frozenset("metal metallic rubber shiny matte matt glossy reflective dull plastic".split())

# Phrases are matched on the normalised text padded with spaces, so " gone " never matches "gonex".
_STRONG_NO_CHANGE = (
    "no change",
    "no changes",
    "nothing has changed",
    "nothing changed",
    "nothing has been changed",
    "nothing was changed",
    "nothing is changed",
    "nothing has been modified",
    "nothing was modified",
    "nothing has moved",
    "nothing moved",
    "nothing is different",
    "nothing different",
    "no difference",
    "no differences",
    "no modification",
    "no modifications",
    "unchanged",
    "did not change",
    "didn t change",
    "has not changed",
    "hasn t changed",
    "have not changed",
    "has not been changed",
    "not been modified",
    "no object has changed",
    "no objects have changed",
)
_WEAK_NO_CHANGE = ("same", "identical", "alike", "remains", "remain", "unaltered", "unmodified")

_ATTR_VERBS = frozenset(
    "changed change changes changing became become becomes turned turns turning now painted recolored".split()
)
_FILLER = frozenset(
    "to into a an the its it is are has have had been be being was color colour material texture "
    "of more completely entirely totally now one just".split()
)
_COLOR_PHRASES = (
    "changed its color",
    "changed its colour",
    "changed color",
    "changed colour",
    "changed in color",
    "changed in colour",
    "color changed",
    "colour changed",
    "color has changed",
    "colour has changed",
    "color has been changed",
    "different color",
    "different colour",
    "color is different",
    "repainted",
    "recolored",
)
_MATERIAL_PHRASES = (
    "changed its material",
    "changed material",
    "changed in material",
    "material changed",
    "material has changed",
    "material has been changed",
    "different material",
    "material is different",
    "changed its texture",
    "different texture",
)
_MOVE_WORDS = frozenset("moved move moves moving relocated relocate shifted displaced repositioned".split())
_MOVE_PHRASES = (
    "changed its location",
    "changed its position",
    "changed its place",
    "changed location",
    "changed position",
    "changed place",
    "changed places",
    "different location",
    "different position",
    "different place",
    "different spot",
    "new location",
    "new position",
    "new spot",
    "new place",
    "another location",
    "another position",
    "another place",
    "another spot",
    "location has changed",
    "position has changed",
    "location changed",
    "position changed",
)
_DROP_WORDS = frozenset(
    "missing disappeared disappear disappears gone removed remove removes vanished absent deleted".split()
)
_DROP_PHRASES = ("no longer", "taken away", "taken out", "not there anymore", "not present", "was taken")
_ADD_WORDS = frozenset(
    "added add adds appeared appear appears appearing placed put introduced new inserted".split()
)
_ADD_PHRASES = ("newly placed", "someone added", "there is a new", "now there is", "has been placed")
_NAMED_COLOR = ("changed the color", "changed the colour", "the color of", "the colour of")
_NAMED_MATERIAL = ("changed the material", "the material of", "changed the texture", "the texture of")
_RESULT_VERBS = frozenset("made make makes painted paint paints".split())  # verb ... object ... new value
_WEAK_ATTR_TRIGGERS = frozenset("changed change changes now different instead turned became".split())


def _words(caption: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", caption.lower()).split()


def _has(text: str, phrases: tuple[str, ...]) -> bool:
    return any(f" {p} " in text for p in phrases)


def _attribute_after_verbs(words: list[str]) -> str | None:
    """Colour/material named by the first content word after a change verb ("changed to metal")."""
    for i, word in enumerate(words):
        if word not in _ATTR_VERBS:
            continue
        j = i + 1
        while j < len(words):
            w = words[j]
            if w == "from":  # "changed from red to blue": the value after "to" is the new one
                k = j + 1
                while k < len(words) and words[k] != "to":
                    k += 1
                j = k + 1
                continue
            if w in _FILLER:
                j += 1
                continue
            break
        if j < len(words):
            if words[j] in MATERIAL_WORDS:
                return "material"
            if words[j] in COLOR_WORDS:
                return "color"
    return None


def classify_change(caption: str) -> str:
    """Change type named by ``caption``: one of ``CHANGE_LABELS`` or ``"unknown"`` (rules in the module doc)."""
    words = _words(caption)
    if not words:
        return "unknown"
    text = f" {' '.join(words)} "
    wordset = set(words)
    if _has(text, _STRONG_NO_CHANGE):
        return "no_change"
    if _has(text, _NAMED_COLOR):  # "changed the color of the shiny ball to gray": "shiny" is not the change
        return "color"
    if _has(text, _NAMED_MATERIAL):
        return "material"
    attribute = _attribute_after_verbs(words)
    if attribute is not None:
        return attribute
    if wordset & _RESULT_VERBS:  # "someone painted the big cylinder blue", "the ball was made matte"
        if words[-1] in MATERIAL_WORDS:
            return "material"
        if words[-1] in COLOR_WORDS:
            return "color"
    if _has(text, _MATERIAL_PHRASES):
        return "material"
    if _has(text, _COLOR_PHRASES):
        return "color"
    if wordset & _MOVE_WORDS or _has(text, _MOVE_PHRASES):
        return "move"
    if wordset & _DROP_WORDS or _has(text, _DROP_PHRASES):
        return "drop"
    if wordset & _ADD_WORDS or _has(text, _ADD_PHRASES):
        return "add"
    if wordset & _WEAK_ATTR_TRIGGERS:
        for word in reversed(words):
            if word in MATERIAL_WORDS:
                return "material"
            if word in COLOR_WORDS:
                return "color"
    if wordset & set(_WEAK_NO_CHANGE):
        return "no_change"
    return "unknown"


def _predicted_labels(
    predictions: Mapping[object, str], true_types: Mapping[object, str]
) -> dict[str, tuple[str, str]]:
    """``{pair_id: (true, predicted)}``; a prediction that already is a label is taken as is, else classified."""
    preds = {str(k): v for k, v in predictions.items()}
    truth = {str(k): v for k, v in true_types.items()}
    missing = [pid for pid in truth if pid not in preds]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise Clip4idcError(f"predictions missing for {len(missing)} of {len(truth)} pairs, e.g. {shown}")
    out = {}
    for pid, true in truth.items():
        pred = preds[pid] if isinstance(preds[pid], str) else ""
        out[pid] = (true, pred if pred in _ALL_LABELS else classify_change(pred))
    return out


def type_accuracy(
    predictions: Mapping[object, str], true_types: Mapping[object, str]
) -> dict[str, float | None]:
    """Percent of pairs whose caption names the true change type: ``overall``, ``change`` (pairs whose true
    type is not ``no_change``), ``no_change`` and one key per type in ``CHANGE_LABELS`` order (plus any other
    true types). ``predictions`` maps pair id to caption (or to a label); pairs are those in ``true_types``.
    A subset with no pairs is ``None``.
    """
    labelled = _predicted_labels(predictions, true_types)

    def accuracy(items: list[tuple[str, str]]) -> float | None:
        return 100.0 * sum(t == p for t, p in items) / len(items) if items else None

    pairs = list(labelled.values())
    out: dict[str, float | None] = {
        "overall": accuracy(pairs),
        "change": accuracy([tp for tp in pairs if tp[0] != "no_change"]),
    }
    types = list(CHANGE_LABELS) + sorted({t for t, _ in pairs} - set(CHANGE_LABELS))
    for typ in types:
        out[typ] = accuracy([tp for tp in pairs if tp[0] == typ])
    return out


def confusion(
    predictions: Mapping[object, str], true_types: Mapping[object, str]
) -> dict[str, dict[str, int]]:
    """Confusion counts ``[true][predicted]`` (predicted may be ``unknown``) for error analysis."""
    table: dict[str, dict[str, int]] = {}
    for true, pred in _predicted_labels(predictions, true_types).values():
        row = table.setdefault(true, {})
        row[pred] = row.get(pred, 0) + 1
    return table
