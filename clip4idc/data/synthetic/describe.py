"""Scene descriptions: what a single synthetic image shows, every object named, for pretraining a CLIP.

A pair caption names one object and rarely its shape; a description names every object in the image with
all four attributes and where it is, so a CLIP trained to match images with descriptions must see each
object's size, colour, material and shape. Objects are listed left to right (by the centre of their box
in the image), each as ``size colour material shape row column`` ("large red metal cube back left"):

    small gray rubber sphere front left, large blue metal cylinder middle center, ...

A *false* description changes one word of one object (its shape to another shape, say) or exchanges one
attribute between two objects; matching an image against its own description and such near misses is
what teaches attribute binding (the CLIP stand-in's pretraining, :mod:`clip4idc.data.scenes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .captions import COLOR_WORDS, MATERIAL_WORDS, SHAPE_WORDS, SIZE_WORDS

ATTRIBUTES = ("size", "color", "material", "shape")
VALUES = {
    "size": tuple(SIZE_WORDS),
    "color": COLOR_WORDS,
    "material": tuple(MATERIAL_WORDS),
    "shape": tuple(SHAPE_WORDS),
}
WORDS = {"size": SIZE_WORDS, "color": {c: (c,) for c in COLOR_WORDS}, "material": MATERIAL_WORDS,
         "shape": SHAPE_WORDS}  # fmt: skip
ROWS = ("back", "middle", "front")  # top, middle, bottom third of the image
COLUMNS = ("left", "center", "right")


@dataclass(frozen=True)
class SeenObject:
    """One object as one image shows it: its attributes there and its box ``[x0, y0, x1, y1]``."""

    size: str
    color: str
    material: str
    shape: str
    box: tuple[int, int, int, int]

    def value(self, attribute: str) -> str:
        return getattr(self, attribute)


def image_objects(scene: dict, view: str) -> list[SeenObject]:
    """The objects image ``view`` (``before``, ``after`` or ``distractor``) of a ``scenes.json`` entry
    shows, with the changed object's after-state attributes in the after image."""
    change = scene.get("change", {})
    out = []
    for k, obj in enumerate(scene["objects"]):
        box = obj["box"].get(view)
        if box is None:
            continue
        attrs = {a: obj[a] for a in ATTRIBUTES}
        if view == "after" and k == change.get("object") and "after" in change:
            attrs.update({a: change["after"][a] for a in ATTRIBUTES if a in change["after"]})
        out.append(SeenObject(**attrs, box=tuple(int(v) for v in box)))
    return sorted(out, key=lambda o: (o.box[0] + o.box[2], o.box[1] + o.box[3]))


def place(obj: SeenObject, width: int, height: int) -> str:
    """``row column`` of the box centre in a 3 x 3 grid of the image ("back left", "front center")."""
    cx, cy = (obj.box[0] + obj.box[2]) / 2, (obj.box[1] + obj.box[3]) / 2
    row = ROWS[min(2, int(3 * cy / height))]
    return f"{row} {COLUMNS[min(2, int(3 * cx / width))]}"


def describe(
    objects: Sequence[SeenObject], width: int, height: int, rng: np.random.Generator | None = None
) -> str:
    """The description of an image showing ``objects`` (left to right); with ``rng``, each attribute's
    word is drawn from its synonyms (the words pair captions use), else the first word is used."""
    parts = []
    for obj in objects:
        words = []
        for attribute in ATTRIBUTES:
            options = WORDS[attribute][obj.value(attribute)]
            words.append(options[int(rng.integers(len(options)))] if rng is not None else options[0])
        parts.append(" ".join(words) + " " + place(obj, width, height))
    return ", ".join(parts)


def change_attribute(
    objects: Sequence[SeenObject], index: int, attribute: str, value: str
) -> list[SeenObject]:
    """``objects`` with object ``index``'s ``attribute`` set to ``value``."""
    out = list(objects)
    out[index] = replace(out[index], **{attribute: value})
    return out


def false_objects(
    objects: Sequence[SeenObject], rng: np.random.Generator, attribute: str | None = None
) -> list[SeenObject] | None:
    """A near miss: one object's ``attribute`` (random when None) changed to another value, or, when
    two objects differ in it, sometimes that attribute exchanged between them. None for no objects."""
    if not objects:
        return None
    attribute = attribute or ATTRIBUTES[int(rng.integers(len(ATTRIBUTES)))]
    k = int(rng.integers(len(objects)))
    mine = objects[k].value(attribute)
    others = [j for j, o in enumerate(objects) if o.value(attribute) != mine]
    if others and rng.random() < 0.3:
        j = others[int(rng.integers(len(others)))]
        swapped = change_attribute(objects, k, attribute, objects[j].value(attribute))
        return change_attribute(swapped, j, attribute, mine)
    choices = [v for v in VALUES[attribute] if v != mine]
    return change_attribute(objects, k, attribute, choices[int(rng.integers(len(choices)))])


__all__ = [
    "ATTRIBUTES",
    "VALUES",
    "SeenObject",
    "change_attribute",
    "describe",
    "false_objects",
    "image_objects",
    "place",
]
