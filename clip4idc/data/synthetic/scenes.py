"""Reading ``scenes.json``, the synthetic generator's ground truth for localisation and error analysis."""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import fail


def load_scenes(root: str | Path) -> dict:
    """``scenes.json``'s ``scenes`` (see :func:`read_scene_file`)."""
    return read_scene_file(root)["scenes"]


def read_scene_file(root: str | Path) -> dict:
    """``scenes.json`` of a generated dataset: ``image_size`` [W, H], ``seed``, and ``scenes``, a dict
    ``scene id (str) → scene``.

    Each scene has ``change`` (``type``, ``object`` index, and ``from``/``to``/``after`` as applicable),
    ``objects`` (``shape``, ``color``, ``material``, ``size``, ``position`` [x, y, z], ``rotation``,
    ``in_before``, ``in_after``, ``box`` with ``before``/``after``/``distractor`` pixel boxes
    ``[x0, y0, x1, y1]`` or None), ``images`` and ``views`` (camera and light of each image).
    """
    path = Path(root) / "scenes.json"
    if not path.exists():
        raise fail(path, "file not found (only synthetic datasets have scenes.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise fail(path, f"malformed JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenes"), dict):
        raise fail(path, "expected an object with a 'scenes' mapping")
    return data


def change_boxes(scene: dict) -> dict[str, list[list[int]]]:
    """Pixel boxes of the changed object: ``{"before": [...], "after": [...]}``.

    Colour, material and move changes have a box in both images; an added object only in the after
    image, a dropped one only in the before image.
    """
    obj = scene["objects"][scene["change"]["object"]]
    return {key: [obj["box"][key]] if obj["box"].get(key) else [] for key in ("before", "after")}
