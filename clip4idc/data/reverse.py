"""Reversed pairs: an 'add' pair seen backwards is a 'drop' of the same object, and the other way round.

Stage 1 learns what tells captions apart *within a batch*. Two captions that differ only in the direction of
the change ("a small red cube has been added" / "the small red cube is missing") almost never meet in a
random batch, so the contrastive loss never asks the encoder which image holds the object, and the demo
model read 168 of 205 test additions as removals. Putting each add/drop pair and its reversed twin in the
same batch makes direction the only thing that separates them.

Rewriting a caption needs its template: :func:`reverse_caption` knows this project's synthetic templates
(:data:`clip4idc.data.synthetic.captions.TEMPLATES`) and returns None for any other wording, so pairs from
other datasets simply get no twin.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from .synthetic.captions import TEMPLATES

OPPOSITE = {"add": "drop", "drop": "add"}
# A relational reference describes the object where it is: "that is left of" in the after image of an
# addition, "that was left of" in the before image of a removal.
_VERB = {"add": " that is ", "drop": " that was "}


@lru_cache
def _patterns(change_type: str) -> list[re.Pattern]:
    return [
        re.compile("^" + re.escape(t).replace(re.escape("{r}"), "(?P<r>.+)") + "$")
        for t in TEMPLATES[change_type]
    ]


def reference_of(caption: str, change_type: str) -> str | None:
    """The object phrase ``{r}`` of an add/drop caption written from a known template, else None."""
    if change_type not in OPPOSITE:
        return None
    for pattern in _patterns(change_type):
        m = pattern.match(caption.strip())
        if m:
            return m.group("r")
    return None


def reverse_caption(caption: str, change_type: str, rng: np.random.Generator) -> str | None:
    """A caption of the reversed pair (a random template of the opposite change), or None if unknown."""
    ref = reference_of(caption, change_type)
    if ref is None:
        return None
    other = OPPOSITE[change_type]
    ref = ref.replace(_VERB[change_type], _VERB[other])
    templates = TEMPLATES[other]
    return templates[int(rng.integers(len(templates)))].format(r=ref)


def reversible(captions: list[str], change_type: str) -> bool:
    """True when every caption of an add/drop pair can be rewritten for its reversed twin."""
    return bool(captions) and all(reference_of(c, change_type) is not None for c in captions)
