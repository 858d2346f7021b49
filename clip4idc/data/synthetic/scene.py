"""Sampling CLEVR-like scenes, one semantic change per scene, and camera / light jitter.

Attribute values and colours are CLEVR's (its ``properties.json``): 3 shapes, 8 colours, 2 materials,
2 sizes. A scene keeps 3–7 objects apart on the ground so that each one is clearly visible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .render import Camera, Light, Shape3D

SHAPES = ("cube", "sphere", "cylinder")
COLORS = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
MATERIALS = ("rubber", "metal")
SIZES = {"large": 0.7, "small": 0.38}
EXTENT = 3.0  # objects' centres lie in [-EXTENT, EXTENT]^2
GAP = 0.3  # minimum free space between two objects' footprints


@dataclass(frozen=True)
class Obj:
    """One object's semantic attributes and pose."""

    shape: str
    color: str
    material: str
    size: str
    x: float
    y: float
    rotation: float

    def to_shape(self) -> Shape3D:
        rgb = tuple(float((c / 255.0) ** 2.2) for c in COLORS[self.color])
        return Shape3D(
            self.shape, self.x, self.y, SIZES[self.size], self.rotation, rgb, self.material == "metal"
        )

    @property
    def footprint(self) -> float:
        return self.to_shape().footprint

    @property
    def z(self) -> float:
        return self.to_shape().half

    def attrs(self) -> dict:
        d = asdict(self)
        return {k: d[k] for k in ("shape", "color", "material", "size")}


def _fits(obj: Obj, others: list[Obj]) -> bool:
    return all(np.hypot(obj.x - o.x, obj.y - o.y) >= obj.footprint + o.footprint + GAP for o in others)


def sample_object(rng: np.random.Generator, others: list[Obj], tries: int = 60) -> Obj | None:
    """A random object placed clear of ``others``, or None when no free spot was found."""
    shape = SHAPES[rng.integers(3)]
    color = list(COLORS)[rng.integers(8)]
    material = MATERIALS[rng.integers(2)]
    size = list(SIZES)[rng.integers(2)]
    rot = float(rng.uniform(0, 90))
    for _ in range(tries):
        x, y = rng.uniform(-EXTENT, EXTENT, size=2)
        obj = Obj(shape, color, material, size, round(float(x), 4), round(float(y), 4), round(rot, 3))
        if _fits(obj, others):
            return obj
    return None


def sample_objects(rng: np.random.Generator, n: int) -> list[Obj] | None:
    objs: list[Obj] = []
    for _ in range(n):
        o = sample_object(rng, objs)
        if o is None:
            return None
        objs.append(o)
    return objs


def apply_change(
    rng: np.random.Generator, objs: list[Obj], change_type: str
) -> tuple[list[Obj], list[Obj], dict] | None:
    """Pick the changed object and make the after scene.

    Returns ``(objects, after_objects, change)``: ``objects`` lists every object that appears in either
    image (before-state attributes and position; an added object is last), ``after_objects`` the after
    scene in the same order (None-free; a dropped object is left out), ``change`` the description.
    """
    k = int(rng.integers(len(objs)))
    target = objs[k]
    if change_type == "color":
        new = [c for c in COLORS if c != target.color][rng.integers(7)]
        after = objs[:k] + [replace(target, color=new)] + objs[k + 1 :]
        return objs, after, {"type": "color", "object": k, "from": target.color, "to": new}
    if change_type == "material":
        new = "metal" if target.material == "rubber" else "rubber"
        after = objs[:k] + [replace(target, material=new)] + objs[k + 1 :]
        return objs, after, {"type": "material", "object": k, "from": target.material, "to": new}
    if change_type == "drop":
        after = objs[:k] + objs[k + 1 :]
        return objs, after, {"type": "drop", "object": k}
    if change_type == "add":
        added = sample_object(rng, objs)
        if added is None:
            return None
        allobjs = objs + [added]
        return allobjs, allobjs, {"type": "add", "object": len(objs)}
    if change_type == "move":
        rest = objs[:k] + objs[k + 1 :]
        for _ in range(60):
            x, y = rng.uniform(-EXTENT, EXTENT, size=2)
            moved = replace(target, x=round(float(x), 4), y=round(float(y), 4))
            far = np.hypot(moved.x - target.x, moved.y - target.y) >= 2 * target.footprint + 1.0
            if far and _fits(moved, rest):
                after = objs[:k] + [moved] + objs[k + 1 :]
                change = {
                    "type": "move",
                    "object": k,
                    "from": [target.x, target.y, round(target.z, 4)],
                    "to": [moved.x, moved.y, round(moved.z, 4)],
                }
                return objs, after, change
        return None
    raise ValueError(f"unknown change type {change_type!r}")


# CLEVR's camera looks down at the scene from one side; each image gets its own small jitter.
BASE_DISTANCE = 10.2
BASE_ELEVATION = 34.0
BASE_AZIMUTH = -45.0
FOV = 44.0


def base_view(rng: np.random.Generator) -> tuple[Camera, Light]:
    """The scene's nominal camera and lights (varied a little across scenes)."""
    az = np.radians(BASE_AZIMUTH + rng.uniform(-8, 8))
    el = np.radians(BASE_ELEVATION + rng.uniform(-3, 3))
    dist = BASE_DISTANCE + rng.uniform(-0.3, 0.3)
    pos = (dist * np.cos(el) * np.cos(az), dist * np.cos(el) * np.sin(az), dist * np.sin(el))
    cam = Camera(tuple(round(float(v), 5) for v in pos), (0.0, 0.0, 0.0), FOV)
    # Key light from the camera's left-back, fill from the right.
    ka = az + np.radians(100 + rng.uniform(-20, 20))
    ke = np.radians(55 + rng.uniform(-8, 8))
    fa = az - np.radians(70 + rng.uniform(-20, 20))
    key = (np.cos(ke) * np.cos(ka), np.cos(ke) * np.sin(ka), np.sin(ke))
    fill = (np.cos(0.5) * np.cos(fa), np.cos(0.5) * np.sin(fa), np.sin(0.5))
    light = Light(tuple(round(float(v), 5) for v in key), tuple(round(float(v), 5) for v in fill))
    return cam, light


def jitter(rng: np.random.Generator, cam: Camera, light: Light, amount: float = 1.0) -> tuple[Camera, Light]:
    """Small camera and lighting perturbation, as CLEVR-Change applies to its second images."""
    pos = np.asarray(cam.position) + rng.normal(0, 0.035 * amount, size=3)
    tgt = np.asarray(cam.target) + rng.normal(0, 0.015 * amount, size=3) * (1, 1, 0)
    key = np.asarray(light.key_dir) + rng.normal(0, 0.05 * amount, size=3)
    key[2] = max(key[2], 0.4)
    fill = np.asarray(light.fill_dir) + rng.normal(0, 0.05 * amount, size=3)
    k = float(np.clip(light.key * (1 + rng.normal(0, 0.04 * amount)), 0.8, 1.2))
    cam2 = Camera(tuple(round(float(v), 5) for v in pos), tuple(round(float(v), 5) for v in tgt), cam.fov)
    light2 = Light(
        tuple(round(float(v), 5) for v in key),
        tuple(round(float(v), 5) for v in fill),
        k,
        light.fill,
        light.ambient,
    )
    return cam2, light2
