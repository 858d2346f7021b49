"""Captions rewritten from the synthetic templates, for harder stage-1 negatives.

Stage 1 learns what tells captions apart *within a batch*. Two things almost never do in a random batch:
- the direction of a change ("a small red cube has been added" / "the small red cube is missing"), so
  an encoder trained on random batches cannot say which image holds the object. :func:`reverse_caption` writes the caption of an add/drop pair seen backwards, and the
  training set's ``reverse_twins`` puts each such pair and its reversed twin in one batch;
- the *kind* of change made to one object ("the red cube moved" / "the red cube is now shiny").
  :func:`counterfactual_captions` writes the same object with other changes: captions that are false for
  the pair, used as extra negatives for it (``type_negatives``).

Both need the caption's template, so they know this project's synthetic templates
(:data:`clip4idc.data.synthetic.captions.TEMPLATES`) and return None for any other wording: pairs from other
datasets simply get no twin and no counterfactuals.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from .readers import CHANGE_TYPES as TYPES
from .synthetic.captions import COLOR_WORDS, MATERIAL_WORDS, TEMPLATES

OPPOSITE = {"add": "drop", "drop": "add"}
_NEW_VALUES = {"color": COLOR_WORDS, "material": tuple(w for ws in MATERIAL_WORDS.values() for w in ws)}
# A relational reference describes the object where it is: "that is left of" in the after image of an
# addition or of a colour/material change, "that was left of" in the before image of a removal or move.
_VERB = {t: " that is " if t in ("add", "color", "material") else " that was " for t in TYPES}


@lru_cache
def _patterns(change_type: str) -> list[re.Pattern]:
    values = "|".join(re.escape(v) for v in _NEW_VALUES.get(change_type, ()))
    out = []
    for t in TEMPLATES[change_type]:
        pattern = (
            re.escape(t).replace(re.escape("{r}"), "(?P<r>.+)").replace(re.escape("{x}"), f"(?:{values})")
        )
        out.append(re.compile(f"^{pattern}$"))
    return out


def _reference_span(caption: str, change_type: str) -> tuple[int, int] | None:
    """Where the object phrase ``{r}`` lies in ``caption.strip()``; None for an unknown template. Where several
    templates match ("the {r} moved" also matches "the cube was moved"), the longest template wins."""
    if change_type not in TEMPLATES:
        return None
    spans = [m.span("r") for p in _patterns(change_type) if (m := p.match(caption.strip()))]
    return min(spans, key=lambda s: s[1] - s[0]) if spans else None


def reference_of(caption: str, change_type: str) -> str | None:
    """The object phrase ``{r}`` of a caption written from a known template, else None."""
    span = _reference_span(caption, change_type)
    return None if span is None else caption.strip()[span[0] : span[1]]


def _write(ref: str, old_type: str, new_type: str, rng: np.random.Generator) -> str:
    ref = ref.replace(_VERB[old_type], _VERB[new_type])
    templates = TEMPLATES[new_type]
    template = templates[int(rng.integers(len(templates)))]
    values = _NEW_VALUES.get(new_type, ("",))
    return template.format(r=ref, x=values[int(rng.integers(len(values)))])


def reverse_caption(caption: str, change_type: str, rng: np.random.Generator) -> str | None:
    """A caption of the reversed add/drop pair (a random template of the opposite change), or None."""
    ref = reference_of(caption, change_type) if change_type in OPPOSITE else None
    return None if ref is None else _write(ref, change_type, OPPOSITE[change_type], rng)


def reversible(captions: list[str], change_type: str) -> bool:
    """True when every caption of an add/drop pair can be rewritten for its reversed twin."""
    return change_type in OPPOSITE and bool(captions) and all(reference_of(c, change_type) for c in captions)


def counterfactual_captions(caption: str, change_type: str, k: int, rng: np.random.Generator) -> list[str]:
    """Up to ``k`` captions of the same object with *other* changes (distinct types, random templates and
    new colour/material words), all false for the pair; [] when the caption's template is unknown."""
    ref = reference_of(caption, change_type)
    if ref is None:
        return []
    others = [t for t in TYPES if t != change_type]
    chosen = [others[i] for i in rng.permutation(len(others))[:k]]
    return [_write(ref, change_type, t, rng) for t in chosen]
