"""Captions in CLEVR-Change's style with its small vocabulary.

The changed object is named by its attributes (``size colour material shape``, synonyms drawn at random);
attributes are dropped only while the description still picks out exactly one object, and a spatial
relation to another object ("that is behind the blue cube") is added when even the full description is
shared by several objects. Several paraphrases per change pair, several no-change captions per scene.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from .scene import Obj

SIZE_WORDS = {"large": ("large", "big"), "small": ("small", "tiny")}
MATERIAL_WORDS = {"rubber": ("rubber", "matte"), "metal": ("metal", "metallic", "shiny")}
SHAPE_WORDS = {"cube": ("cube", "block"), "sphere": ("sphere", "ball"), "cylinder": ("cylinder",)}
GENERIC_NOUNS = ("object", "thing")
COLOR_WORDS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
RELATIONS = ("behind", "in front of", "to the left of", "to the right of")

NO_CHANGE = (
    "there is no change",
    "the scene is the same as before",
    "nothing has changed",
    "no change was made",
    "the two scenes seem identical",
    "nothing was changed",
    "the scene remains the same",
    "no change has been made",
    "there is no difference",
    "the two scenes are the same",
)

# {r}: the changed object's description with its article; {x}: the new colour / material word.
TEMPLATES = {
    "color": (
        "the {r} changed to {x}",
        "the {r} became {x}",
        "the {r} turned {x}",
        "the {r} is now {x}",
        "the {r} was painted {x}",
        "the {r} changed its color to {x}",
        "someone changed the color of the {r} to {x}",
        "someone painted the {r} {x}",
    ),
    "material": (
        "the {r} became {x}",
        "the {r} is now {x}",
        "the {r} turned {x}",
        "the {r} changed to {x}",
        "the {r} was made {x}",
        "someone made the {r} {x}",
        "the {r} changed its material to {x}",
    ),
    "add": (
        "someone added a {r}",
        "a {r} has been added",
        "a {r} appeared",
        "there is a new {r}",
        "a {r} has been newly placed",
        "a new {r} was placed in the scene",
        "the {r} is new",
        "a {r} was added to the scene",
    ),
    "drop": (
        "the {r} is missing",
        "the {r} has disappeared",
        "the {r} is gone",
        "the {r} was removed",
        "someone removed the {r}",
        "the {r} is no longer there",
        "the {r} disappeared from the scene",
    ),
    "move": (
        "the {r} moved",
        "the {r} has been moved to a different location",
        "the {r} changed its location",
        "someone moved the {r}",
        "the {r} is in a different location",
        "the {r} was moved",
        "the {r} has been moved to a different location in the scene",
    ),
}

_ATTRS = ("size", "color", "material")


def _matches(obj: Obj, spec: dict) -> bool:
    return all(getattr(obj, k) == v for k, v in spec.items())


def unique_specs(target: Obj, scene: list[Obj]) -> list[dict]:
    """Attribute subsets (always including the shape, or not) that match only ``target`` in ``scene``.

    The full description comes first when it is unique.
    """
    out: list[dict] = []
    full_attrs = ("size", "color", "material", "shape")
    for n in range(4, 0, -1):
        for keys in combinations(full_attrs, n):
            spec = {k: getattr(target, k) for k in keys}
            if sum(_matches(o, spec) for o in scene) == 1:
                out.append(spec)
    return out


def phrase(spec: dict, rng: np.random.Generator) -> str:
    """Words for an attribute subset in CLEVR's order: size colour material shape (synonyms at random)."""
    words = []
    if "size" in spec:
        words.append(_pick(SIZE_WORDS[spec["size"]], rng))
    if "color" in spec:
        words.append(spec["color"])
    if "material" in spec:
        words.append(_pick(MATERIAL_WORDS[spec["material"]], rng))
    words.append(_pick(SHAPE_WORDS[spec["shape"]], rng) if "shape" in spec else _pick(GENERIC_NOUNS, rng))
    return " ".join(words)


def _pick(options, rng: np.random.Generator):
    return options[int(rng.integers(len(options)))]


def relation(a: Obj, b: Obj, right: np.ndarray, toward: np.ndarray, margin: float = 0.35) -> list[str]:
    """Relations that hold for ``a`` with respect to ``b`` as seen from the camera."""
    dx = np.array([a.x - b.x, a.y - b.y])
    rels = []
    if dx @ toward < -margin:
        rels.append("behind")
    if dx @ toward > margin:
        rels.append("in front of")
    if dx @ right < -margin:
        rels.append("to the left of")
    if dx @ right > margin:
        rels.append("to the right of")
    return rels


def relational_refs(
    target: Obj, scene: list[Obj], right: np.ndarray, toward: np.ndarray
) -> list[tuple[str, Obj, dict]]:
    """(relation, landmark, landmark's unique spec) triples that single out ``target`` among its twins."""
    full = {k: getattr(target, k) for k in ("size", "color", "material", "shape")}
    twins = [o for o in scene if o is not target and _matches(o, full)]
    out = []
    for lm in scene:
        if lm is target or lm in twins:
            continue
        specs = unique_specs(lm, scene)
        if not specs:
            continue
        for rel in relation(target, lm, right, toward):
            if all(rel not in relation(t, lm, right, toward) for t in twins):
                out.append((rel, lm, specs[0]))
    return out


def ground_axes(camera_position, camera_target) -> tuple[np.ndarray, np.ndarray]:
    """Camera's right vector and its 'toward the viewer' vector, projected on the ground."""
    f = np.asarray(camera_target, dtype=float)[:2] - np.asarray(camera_position, dtype=float)[:2]
    f /= np.linalg.norm(f)
    right = np.array([f[1], -f[0]])
    return right, -f


def change_captions(
    change: dict,
    scene: list[Obj],
    target: Obj,
    rng: np.random.Generator,
    axes: tuple[np.ndarray, np.ndarray],
    count: tuple[int, int] = (6, 9),
) -> list[str] | None:
    """Paraphrases of one change; ``scene`` is where the target is named (the after scene for 'add').

    None when the target cannot be named unambiguously (the caller then resamples the scene).
    """
    ctype = change["type"]
    specs = unique_specs(target, scene)
    rel_refs: list[tuple[str, Obj, dict]] = []
    if not specs:
        rel_refs = relational_refs(target, scene, *axes)
        if not rel_refs:
            return None
    full = {k: getattr(target, k) for k in ("size", "color", "material", "shape")}
    templates = list(TEMPLATES[ctype])
    n = int(rng.integers(count[0], count[1] + 1))
    order = rng.permutation(len(templates))
    out: list[str] = []
    for i in range(n):
        tpl = templates[order[i % len(templates)]]
        if specs:
            # Favour complete descriptions (as most real captions are), sometimes shorter unique ones.
            spec = specs[0] if rng.random() < 0.5 else specs[int(rng.integers(len(specs)))]
            ref = phrase(spec, rng)
        else:
            rel, lm, lm_spec = rel_refs[int(rng.integers(len(rel_refs)))]
            verb = "is" if ctype in ("add", "color", "material") else "was"
            ref = f"{phrase(full, rng)} that {verb} {rel} the {phrase(lm_spec, rng)}"
        x = ""
        if ctype == "color":
            x = change["to"]
        elif ctype == "material":
            x = _pick(MATERIAL_WORDS[change["to"]], rng)
        text = tpl.format(r=ref, x=x)
        if text not in out:
            out.append(text)
    return out


def no_change_captions(rng: np.random.Generator, count: tuple[int, int] = (5, 8)) -> list[str]:
    n = int(rng.integers(count[0], count[1] + 1))
    return [NO_CHANGE[i] for i in sorted(rng.permutation(len(NO_CHANGE))[:n])]


@dataclass(frozen=True)
class ParsedCaption:
    """What a change caption of this generator says: the change type, the attributes it names the changed
    object by (``spec``; None when it names it by a relation to another object), and the new colour or
    material (``to``) of a colour / material change."""

    change_type: str
    spec: frozenset[tuple[str, str]] | None
    to: str | None = None


def _template_patterns() -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for ctype, templates in TEMPLATES.items():
        for tpl in templates:
            body = re.escape(tpl).replace(r"\{r\}", "(?P<r>.+?)").replace(r"\{x\}", "(?P<x>[a-z]+)")
            out.append((ctype, re.compile(f"^{body}$")))
    return out


_PATTERNS = _template_patterns()
WORDS_OF_VALUE = {  # attribute → canonical value → its caption words (synonyms)
    "size": SIZE_WORDS,
    "color": {color: (color,) for color in COLOR_WORDS},
    "material": MATERIAL_WORDS,
    "shape": SHAPE_WORDS,
}
ATTRIBUTE_OF_WORD = {  # caption word → (attribute, canonical value): the inverse of WORDS_OF_VALUE
    word: (attr, value)
    for attr, groups in WORDS_OF_VALUE.items()
    for value, words in groups.items()
    for word in words
}


def _parse_reference(ref: str) -> frozenset[tuple[str, str]]:
    """``"tiny red matte block"`` → ``{size: small, color: red, material: rubber, shape: cube}``."""
    *attrs, noun = ref.split()
    spec = {}
    for word in attrs:
        if word not in ATTRIBUTE_OF_WORD or ATTRIBUTE_OF_WORD[word][0] == "shape":
            raise ValueError(word)
        attr, value = ATTRIBUTE_OF_WORD[word]
        if attr in spec:
            raise ValueError(word)
        spec[attr] = value
    if noun in ATTRIBUTE_OF_WORD and ATTRIBUTE_OF_WORD[noun][0] == "shape":
        spec["shape"] = ATTRIBUTE_OF_WORD[noun][1]
    elif noun not in GENERIC_NOUNS:
        raise ValueError(noun)
    return frozenset(spec.items())


def parse_change_caption(caption: str) -> ParsedCaption | None:
    """Invert :func:`change_captions`: the change type, the object's naming attributes and the new value.

    None when the caption is not one this generator writes (a no-change caption, or another dataset's).
    Why: knowing exactly what a caption pins down tells which pairs it fits, and so how well *any* model
    could retrieve its pair (:func:`clip4idc.evaluation.probes.retrieval_ceiling`).
    """
    text = " ".join(caption.lower().split())
    for ctype, pattern in _PATTERNS:
        match = pattern.match(text)
        if match is None:
            continue
        to = match.groupdict().get("x")
        if ctype == "color" and to not in COLOR_WORDS:
            continue
        if ctype == "material":
            attr, to = ATTRIBUTE_OF_WORD.get(to, (None, None))
            if attr != "material":
                continue
        ref = match.group("r")
        if " that " in ref:  # "<full description> that is/was <relation> the <landmark>"
            return ParsedCaption(ctype, None, to)
        try:
            return ParsedCaption(ctype, _parse_reference(ref), to)
        except ValueError:
            continue
    return None


def vocabulary() -> set[str]:
    """Every word the generator can write (to keep it small and test it)."""
    words: set[str] = set(COLOR_WORDS) | set(GENERIC_NOUNS)
    for group in (SIZE_WORDS, MATERIAL_WORDS, SHAPE_WORDS):
        for syn in group.values():
            words |= set(syn)
    for rel in RELATIONS:
        words |= set(rel.split())
    words |= {"that", "is", "was", "the"}
    for tpls in TEMPLATES.values():
        for t in tpls:
            words |= set(t.replace("{r}", "").replace("{x}", "").split())
    for t in NO_CHANGE:
        words |= set(t.split())
    return words
