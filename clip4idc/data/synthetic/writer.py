"""Generate a synthetic CLEVR-Change dataset in the official layout (plus ``scenes.json``).

Every scene is made from its own generator ``default_rng([seed, index])``, so the files are byte-identical
whatever the number of workers and whatever ``--pairs`` (scene ``i`` never depends on scene ``j``); change
types are balanced in blocks of five consecutive scenes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import Clip4idcError
from ..readers import CHANGE_TYPES
from .captions import change_captions, ground_axes, no_change_captions
from .render import Camera, Light, RenderResult, in_frame, render
from .scene import Obj, apply_change, base_view, jitter, sample_objects

DEFAULT_NAME = "CLEVR_default_%06d.png"
SEMANTIC_NAME = "CLEVR_semantic_%06d.png"
NONSEMANTIC_NAME = "CLEVR_nonsemantic_%06d.png"
IMAGE_KEYS = ("before", "after", "distractor")
# The bundled models are trained and tested at this size, so ``clip4idc data synth DIR`` then
# ``clip4idc eval --checkpoint demo --data DIR`` is the honest check.
DEFAULT_SIZE = (160, 120)


def change_type_for(index: int, seed: int) -> str:
    """Types are shuffled within each block of five scenes: exact balance, no fixed cycle."""
    perm = np.random.default_rng([seed, index // 5, 7919]).permutation(5)
    return CHANGE_TYPES[int(perm[index % 5])]


def _ok(res: RenderResult, min_pixels: float) -> bool:
    """Every object inside the frame and mostly visible (as CLEVR rejects hidden objects)."""
    for vis, full, clip in zip(res.visible, res.unoccluded, res.clipped):
        if clip or vis < min_pixels or vis < 0.55 * full:
            return False
    return True


def _iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _view_dict(cam: Camera, light: Light) -> dict:
    return {
        "camera": {"position": list(cam.position), "target": list(cam.target), "fov": cam.fov},
        "light": {"key": list(light.key_dir), "fill": list(light.fill_dir), "key_intensity": light.key},
    }


def make_scene(index: int, seed: int, width: int, height: int, max_tries: int = 50) -> tuple[list, dict]:
    """Render one scene: ``([before, after, distractor] uint8 arrays, metadata)``."""
    rng = np.random.default_rng([seed, index])
    ctype = change_type_for(index, seed)
    lo, hi = {"add": (3, 6), "drop": (4, 7)}.get(ctype, (3, 7))
    min_pixels = max(4.0, 0.0009 * width * height)
    for _ in range(max_tries):
        objs = sample_objects(rng, int(rng.integers(lo, hi + 1)))
        if objs is None:
            continue
        made = apply_change(rng, objs, ctype)
        if made is None:
            continue
        objects, after_objs, change = made
        k = change["object"]
        before_objs = objects[:-1] if ctype == "add" else objects
        cam0, light0 = base_view(rng)
        cam1, light1 = jitter(rng, cam0, light0)
        cam2, light2 = jitter(rng, cam0, light0)
        target = objects[k]
        naming_scene = after_objs if ctype == "add" else before_objs
        caps = change_captions(change, naming_scene, target, rng, ground_axes(cam0.position, cam0.target))
        if caps is None:
            continue
        views = {"before": (before_objs, cam0, light0), "after": (after_objs, cam1, light1)}
        views["distractor"] = (before_objs, cam2, light2)
        margin = 0.01 * width
        if not all(
            in_frame(o.to_shape(), c, width, height, margin) for ob, c, _ in views.values() for o in ob
        ):
            continue
        renders = {}
        for key, (scene_objs, cam, light) in views.items():
            res = render([o.to_shape() for o in scene_objs], cam, light, width, height)
            if not _ok(res, min_pixels):
                break
            renders[key] = res
        if len(renders) < 3:
            continue
        boxes = _object_boxes(objects, change, renders)
        if ctype == "move" and _iou(boxes[k]["before"], boxes[k]["after"]) > 0.2:
            continue
        meta = {
            "change": change,
            "objects": [
                {
                    **o.attrs(),
                    "position": [o.x, o.y, round(o.z, 4)],
                    "rotation": o.rotation,
                    "in_before": b["before"] is not None,
                    "in_after": b["after"] is not None,
                    "box": b,
                }
                for o, b in zip(objects, boxes)
            ],
            "views": {
                "before": _view_dict(cam0, light0),
                "after": _view_dict(cam1, light1),
                "distractor": _view_dict(cam2, light2),
            },
            "change_captions": caps,
            "no_change_captions": no_change_captions(rng),
        }
        if ctype in ("color", "material", "move"):
            after_target = after_objs[k]
            meta["change"]["after"] = after_target.attrs()
        return [renders[key].image for key in IMAGE_KEYS], meta
    raise Clip4idcError(f"scene {index}: no valid layout in {max_tries} tries at {width}x{height}")


def _object_boxes(objects: list[Obj], change: dict, renders: dict) -> list[dict]:
    """Each object's box in each image it appears in (None where it is absent)."""
    ctype, k = change["type"], change["object"]
    out = []
    for i in range(len(objects)):
        in_before = not (ctype == "add" and i == k)
        if ctype == "drop":
            after_idx = None if i == k else (i if i < k else i - 1)
        else:
            after_idx = i
        out.append(
            {
                "before": renders["before"].boxes[i] if in_before else None,
                "after": None if after_idx is None else renders["after"].boxes[after_idx],
                "distractor": renders["distractor"].boxes[i] if in_before else None,
            }
        )
    return out


def _save_png(arr: np.ndarray, path: Path) -> None:
    # PIL writes no timestamp or other varying chunk: same pixels → same bytes.
    Image.fromarray(arr).save(path, format="PNG", compress_level=6)


def _job(args: tuple) -> tuple[int, dict]:
    index, seed, width, height, out = args
    images, meta = make_scene(index, seed, width, height)
    out = Path(out)
    for sub, name, arr in zip(
        ("images", "sc_images", "nsc_images"), (DEFAULT_NAME, SEMANTIC_NAME, NONSEMANTIC_NAME), images
    ):
        _save_png(arr, out / sub / (name % index))
    return index, meta


def make_splits(n: int, seed: int, val_frac: float, test_frac: float) -> dict[str, list[int]]:
    """Deterministic random split of ``range(n)``; val and test get at least one id each when asked for."""
    perm = np.random.default_rng([seed, 2**31 - 1]).permutation(n)

    def count(frac: float) -> int:
        return 0 if frac <= 0 else max(1 if n >= 3 else 0, int(round(n * frac)))

    n_test, n_val = count(test_frac), count(val_frac)
    test = sorted(int(i) for i in perm[:n_test])
    val = sorted(int(i) for i in perm[n_test : n_test + n_val])
    train = sorted(int(i) for i in perm[n_test + n_val :])
    return {"train": train, "val": val, "test": test}


def generate(
    out: str | Path,
    pairs: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    workers: int = 1,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    progress: bool = True,
) -> dict:
    """Write ``pairs`` scenes to ``out`` in CLEVR-Change's layout; returns a small summary with timings."""
    width, height = size
    if pairs < 1:
        raise Clip4idcError(f"--pairs must be at least 1, got {pairs}")
    if width < 32 or height < 24:
        raise Clip4idcError(f"image size {width}x{height} is too small (at least 32x24)")
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise Clip4idcError("--val-frac and --test-frac must be in [0, 1) and sum to less than 1")
    out = Path(out)
    for sub in ("images", "sc_images", "nsc_images"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, width, height, str(out)) for i in range(pairs)]
    metas: dict[int, dict] = {}
    start = time.perf_counter()
    bar = _progress(pairs, progress)
    if workers <= 1:
        for job in jobs:
            i, meta = _job(job)
            metas[i] = meta
            bar.update(1)
    else:
        ctx = get_context("fork") if sys.platform.startswith("linux") else get_context()
        with ctx.Pool(workers) as pool:
            for i, meta in pool.imap_unordered(_job, jobs, chunksize=max(1, min(16, pairs // (workers * 8)))):
                metas[i] = meta
                bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - start
    _write_json(out, metas, pairs, seed, width, height, val_frac, test_frac)
    return {"pairs": pairs, "seconds": elapsed, "pairs_per_second": pairs / max(elapsed, 1e-9)}


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="pair", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def _write_json(
    out: Path, metas: dict, n: int, seed: int, width: int, height: int, vf: float, tf: float
) -> None:
    change_caps, nc_caps, scenes = {}, {}, {}
    type_map: dict[str, list[int]] = {t: [] for t in CHANGE_TYPES}
    for i in range(n):
        meta = metas[i]
        name = DEFAULT_NAME % i
        change_caps[name] = meta["change_captions"]
        nc_caps[name] = meta["no_change_captions"]
        type_map[meta["change"]["type"]].append(i)
        scenes[str(i)] = {
            "images": {
                "before": f"images/{DEFAULT_NAME % i}",
                "after": f"sc_images/{SEMANTIC_NAME % i}",
                "distractor": f"nsc_images/{NONSEMANTIC_NAME % i}",
            },
            "change": meta["change"],
            "objects": meta["objects"],
            "views": meta["views"],
        }
    _dump(out / "change_captions.json", change_caps)
    _dump(out / "no_change_captions.json", nc_caps)
    _dump(out / "type_mapping.json", type_map)
    _dump(out / "splits.json", make_splits(n, seed, vf, tf))
    _dump(
        out / "scenes.json",
        {
            "version": 1,
            "generator": "clip4idc.data.synthetic",
            "seed": seed,
            "image_size": [width, height],
            "scenes": scenes,
        },
    )


def _dump(path: Path, obj) -> None:
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"))
    os.replace(tmp, path)
