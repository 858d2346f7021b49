"""The pointing game: does a map's peak land on the changed object?

A hit is when the peak cell of a map, mapped to the original image by its centre, falls inside the changed
object's box (:func:`pointing_hit`); every pointing-game number in the toolkit is computed by this rule.
:func:`pointing_game` plays it on a synthetic set (boxes from ``scenes.json``) with the decoder's attention
(:mod:`.maps`), the gradient maps, the encoder's difference maps or the pixel difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.readers import NO_CHANGE, scene_id_of
from ..errors import Clip4idcError
from ..preprocess import load_image, preprocess_pairs
from .maps import (
    CaptionAttention,
    captions_from_hidden,
    difference_maps,
    gradient_maps,
    pixel_difference_maps,
)

Box = Sequence[float]


def after_peak_hit(after_map: np.ndarray, boxes: Iterable[Box], image_size: tuple[int, int]) -> bool:
    """Does the peak cell of ``after_map`` (g, g), mapped to ``image_size`` = (width, height) by its centre,
    fall inside one of ``boxes`` (pixel ``[x0, y0, x1, y1]``)? The toolkit-wide rule of
    :func:`clip4idc.explanation.pointing.pointing_hit`, so every pointing-game number is computed the same way."""
    return pointing_hit(np.asarray(after_map), [list(map(float, b)) for b in boxes], tuple(image_size))


def pair_boxes(boxes: Mapping[str, Sequence[Box]]) -> tuple[list[Box], list[Box]]:
    """(before, after) boxes a peak in each image must hit: the changed object's box in that image, or where
    it is absent there (before an add, after a drop) its box in the other image."""
    before = list(boxes.get("before") or boxes.get("after") or [])
    after = list(boxes.get("after") or boxes.get("before") or [])
    return before, after


def pair_peak_hit(
    before_map: np.ndarray,
    after_map: np.ndarray,
    boxes: Mapping[str, Sequence[Box]],
    image_size: tuple[int, int],
) -> bool:
    """The pointing game on a pair: the peak over the cells of *both* images' maps (a tie goes to the after
    image) must fall inside the changed object's box in the image it lies in. Where the object is absent
    from that image (before an add, after a drop) its box in the other image stands for the place (the
    camera is the same up to a small jitter). ``boxes``: ``{"before": [...], "after": [...]}``.

    Why both images: a dropped object is only in the before image, and a model that points at it there has
    found the change; a map that shows one place for both images (pixel or encoder differences) ties, and
    plays as :func:`after_peak_hit` with :func:`pointing_boxes`."""
    before_boxes, after_boxes = pair_boxes(boxes)
    if float(np.nanmax(before_map)) > float(np.nanmax(after_map)):
        return after_peak_hit(before_map, before_boxes, image_size)
    return after_peak_hit(after_map, after_boxes, image_size)


def pointing_boxes(change_type: str, boxes: Mapping[str, Sequence[Box]]) -> list[Box]:
    """Boxes the after-image peak may hit: the changed object's after-image box, or for ``drop`` (object gone
    from the after image) its before-image box, the camera being the same up to a small jitter."""
    if change_type in NO_CHANGE:
        return []
    if change_type == "drop" or not boxes.get("after"):
        return list(boxes.get("before", []))
    return list(boxes.get("after", []))


POINTING_METHODS = ("attention", "gradient", "difference", "pixels")


def pointing_game(
    model: torch.nn.Module,
    pairs: Iterable[Any] | None,
    scenes_root: str | Path,
    batch_size: int = 16,
    max_words: int | None = None,
    method: str = "attention",
    block: int | None = None,
    readouts: Sequence[str] = (),
) -> dict[str, Any]:
    """Pointing-game accuracy (%) of a synthetic dataset, overall and per change type.

    ``scenes_root`` holds ``scenes.json`` (image paths are relative to it); ``pairs`` lists the scenes to
    play (ids, CLEVR file names, records or reader ``Pair`` objects; ``None`` = all). Every pair is judged
    by :func:`pair_peak_hit` (the peak over both images' maps). Captions are greedy; the maps played are
    :meth:`CaptionAttention.change_maps` (mean over words of each image's map), or with
    ``method="gradient"`` the sum of the before and after :func:`gradient_maps` as one map for both images;
    ``"difference"`` plays :func:`difference_maps` at vision block ``block`` and ``"pixels"``
    :func:`pixel_difference_maps`, one map for both images (no captions are written for these two);
    no-change scenes are skipped. Returns ``{"overall": %, "per_type": {type: %}, "counts": {type: n}, "n":
    n, "chance": %}`` (``chance``: :func:`clip4idc.explanation.pointing.pointing_chance` of a peak cell drawn from
    either image, over the played pairs); ``method="attention"`` adds ``"after_image_only"``
    (``{"overall", "per_type"}`` of the after image's map alone, :func:`after_peak_hit` with
    :func:`pointing_boxes`: the game as it was played before it looked at both images). ``readouts`` names further
    methods (``"difference"``, ``"pixels"``) to play on the same images, each decoded once; their
    ``{"overall", "per_type"}`` come back under ``"readouts"``. ``"captions"`` holds each played scene's
    greedy caption (scene id → text; none for the caption-free methods), so an evaluation need not decode
    those pairs a second time.
    """
    from ..data.synthetic import change_boxes, load_scenes

    for name in (method, *readouts):
        if name not in POINTING_METHODS:
            raise ValueError(f"method must be one of {', '.join(POINTING_METHODS)}; got {name!r}")
    if set(readouts) & {"attention", "gradient"}:
        raise ValueError("readouts plays the maps that need no caption: 'difference' and 'pixels'")
    root = Path(scenes_root)
    scenes = load_scenes(root)
    refs = list(scenes) if pairs is None else [scene_id_of(p) for p in pairs]
    jobs = []
    for sid in (r for r in refs if r is not None):
        scene = scenes.get(sid)
        if scene is None:
            raise Clip4idcError(f"{root / 'scenes.json'}: no scene {sid}")
        change = str(scene["change"]["type"])
        boxes = change_boxes(scene)
        if pointing_boxes(change, boxes):
            jobs.append(
                (root / scene["images"]["before"], root / scene["images"]["after"], change, boxes, sid)
            )
    device = next(model.parameters()).device
    hits: dict[str, list[bool]] = {}
    after_only: dict[str, list[bool]] = {}
    extra: dict[str, dict[str, list[bool]]] = {name: {} for name in readouts}
    chance: list[float] = []
    captions: dict[str, str] = {}
    grid = model.config.grid

    def caption_free_maps(
        name: str, bef: torch.Tensor, aft: torch.Tensor
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        if name == "difference":
            return [(m, m) for m in difference_maps(model, bef, aft, block)]
        return [(m, m) for m in pixel_difference_maps(bef, aft, model.config.patch)]

    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        bef_imgs = [load_image(j[0]) for j in chunk]
        aft_imgs = [load_image(j[1]) for j in chunk]
        bef, aft = (t.to(device) for t in preprocess_pairs(bef_imgs, aft_imgs, model.config.resolution))
        results: list[CaptionAttention] = []
        if method in ("difference", "pixels"):
            maps = caption_free_maps(method, bef, aft)
        else:
            with torch.no_grad():
                hidden = model.encode_pair(bef, aft).hidden
            results = captions_from_hidden(model, hidden, max_words=max_words)
            if method == "gradient":
                sums = [g.sum(axis=0) for g in gradient_maps(model, bef, aft, [r.token_ids for r in results])]
                maps = [(m, m) for m in sums]
            else:
                maps = [r.change_maps() for r in results]
        for (bef_map, aft_map), (_, _, change, boxes, _), img in zip(maps, chunk, aft_imgs):
            hits.setdefault(change, []).append(pair_peak_hit(bef_map, aft_map, boxes, img.size))
            if method == "attention":
                played = pointing_boxes(change, boxes)
                after_only.setdefault(change, []).append(after_peak_hit(aft_map, played, img.size))
            chance.append(float(np.mean([pointing_chance([b], img.size, grid) for b in pair_boxes(boxes)])))
        for name, table in extra.items():
            for (bef_map, aft_map), (_, _, change, boxes, _), img in zip(
                caption_free_maps(name, bef, aft), chunk, aft_imgs
            ):
                table.setdefault(change, []).append(pair_peak_hit(bef_map, aft_map, boxes, img.size))
        captions.update({job[4]: res.caption for job, res in zip(chunk, results)})

    def score(table: dict[str, list[bool]]) -> dict[str, Any]:
        every = [h for v in table.values() for h in v]
        return {
            "overall": 100.0 * float(np.mean(every)) if every else float("nan"),
            "per_type": {k: 100.0 * float(np.mean(v)) for k, v in sorted(table.items())},
        }

    result = {
        **score(hits),
        "counts": {k: len(v) for k, v in sorted(hits.items())},
        "n": sum(len(v) for v in hits.values()),
        "chance": float(np.mean(chance)) if chance else float("nan"),
        "captions": captions,
    }
    if method == "attention":
        result["after_image_only"] = score(after_only)
    if readouts:
        result["readouts"] = {name: score(table) for name, table in extra.items()}
    return result


def pointing_hit(heatmap: Any, boxes: Sequence[Sequence[float]], image_size: tuple[int, int]) -> bool:
    """Pointing game: does the heat-map peak land inside any changed-object box?

    The peak cell (first maximum in row-major order) is mapped to image pixels by its centre:
    ``x = (col + 0.5) * W / w``, ``y = (row + 0.5) * H / h``. Boxes are ``[x0, y0, x1, y1]`` in image pixels,
    edges inclusive. No boxes (e.g. a no-change pair) gives ``False``; leave such pairs out of the game.
    """
    if hasattr(heatmap, "detach"):  # a torch tensor
        heatmap = heatmap.detach().to("cpu").double().numpy()
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"heatmap must be a non-empty 2-D array, got shape {heat.shape}")
    width, height = image_size
    row, col = np.unravel_index(int(np.nanargmax(heat)), heat.shape)
    x = (col + 0.5) * width / heat.shape[1]
    y = (row + 0.5) * height / heat.shape[0]
    return any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in boxes)


def hit_rate(hits: Sequence[bool]) -> float:
    """Pointing-game accuracy in percent over the pairs that were played."""
    values = [bool(h) for h in hits]
    if not values:
        raise ValueError("hit_rate needs at least one hit/miss")
    return 100.0 * sum(values) / len(values)


def pointing_chance(
    boxes: Sequence[Sequence[Sequence[float]]], image_size: tuple[int, int], grid: int
) -> float:
    """Chance level of the pointing game (%): the hit rate of a peak cell drawn uniformly from a
    ``grid × grid`` map, averaged over pairs (``boxes[i]`` = pair ``i``'s pixel boxes). Each cell is judged
    by :func:`clip4idc.explanation.pointing.pointing_hit`, the rule every pointing-game number uses."""

    if not boxes:
        raise ValueError("pointing_chance needs at least one pair")
    rates = []
    for pair_boxes in boxes:
        hits = 0
        for cell in range(grid * grid):
            heat = np.zeros((grid, grid))
            heat.flat[cell] = 1.0
            hits += pointing_hit(heat, pair_boxes, image_size)
        rates.append(hits / (grid * grid))
    return 100.0 * float(np.mean(rates))
