"""A small vectorised numpy ray caster for CLEVR-like scenes.

Why not Blender: the toolkit must generate tens of thousands of pairs offline on a laptop CPU with no heavy
dependency. One primary ray per (super)sample, analytic sphere / rotated-box / vertical-cylinder hits, a
ground plane, a key light with shadow rays, a fill light, Blinn-Phong highlights and a fake environment
reflection for metal. Rays are only tested against an object inside the screen rectangle its bounding
sphere projects to (and shadow rays only inside the rectangle its shadow can fall in), which keeps the
cost close to one pass over the pixels.

World frame: ground plane ``z = 0``, objects rest on it, ``x``/``y`` in about ``[-3, 3]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS = 1e-4
INF = np.float32(1e30)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera looking from ``position`` at ``target``; ``fov`` is the horizontal field of view."""

    position: tuple[float, float, float]
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fov: float = 46.0

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit forward, right and up vectors (float64)."""
        pos = np.asarray(self.position, dtype=np.float64)
        fwd = np.asarray(self.target, dtype=np.float64) - pos
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, (0.0, 0.0, 1.0))
        right /= np.linalg.norm(right)
        up = np.cross(right, fwd)
        return fwd, right, up

    def project(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """World points (N, 3) → pixel coordinates (N, 2) as floats (x right, y down), pixel centres at +0.5."""
        fwd, right, up = self.basis()
        v = np.asarray(points, dtype=np.float64) - np.asarray(self.position)
        z = np.maximum(v @ fwd, 1e-6)
        tan_h = np.tan(np.radians(self.fov) / 2)
        tan_v = tan_h * height / width
        sx = (v @ right) / (z * tan_h)
        sy = (v @ up) / (z * tan_v)
        return np.stack([(sx + 1) / 2 * width, (1 - sy) / 2 * height], axis=-1)


@dataclass(frozen=True)
class Light:
    """Directional key light (casts shadows) and a weaker fill light; all directions point to the light."""

    key_dir: tuple[float, float, float]
    fill_dir: tuple[float, float, float]
    key: float = 1.0
    fill: float = 0.35
    ambient: float = 0.22


@dataclass
class Shape3D:
    """One object ready to render: ``kind`` in cube/sphere/cylinder, ``radius`` the size parameter."""

    kind: str
    x: float
    y: float
    radius: float
    rotation: float  # degrees about the vertical axis (cubes only)
    rgb: tuple[float, float, float]  # linear RGB
    metal: bool
    extra: dict = field(default_factory=dict)

    # Cubes and cylinders are slightly smaller than their size so the three shapes look alike in bulk.
    @property
    def half(self) -> float:
        return {"sphere": self.radius, "cube": 0.78 * self.radius, "cylinder": 0.82 * self.radius}[self.kind]

    @property
    def height(self) -> float:
        return 2 * self.half

    @property
    def center(self) -> np.ndarray:
        return np.array([self.x, self.y, self.half])

    @property
    def bound(self) -> float:
        """Radius of a sphere around ``center`` that contains the object."""
        return self.half * (
            np.sqrt(3.0) if self.kind == "cube" else np.sqrt(2.0) if self.kind == "cylinder" else 1.0
        )

    @property
    def footprint(self) -> float:
        """Radius of a circle on the ground that contains the object (for placement)."""
        return self.half * (np.sqrt(2.0) if self.kind == "cube" else 1.0)


def in_frame(shape: Shape3D, cam: Camera, width: int, height: int, margin: float = 0.0) -> bool:
    """Whether the object's bounding box projects inside the image (``margin`` in pixels)."""
    f = shape.footprint
    corners = np.array(
        [[shape.x + i * f, shape.y + j * f, z] for i in (-1, 1) for j in (-1, 1) for z in (0.0, shape.height)]
    )
    px = cam.project(corners, width, height)
    return bool(
        (px >= margin).all() and (px[:, 0] <= width - margin).all() and (px[:, 1] <= height - margin).all()
    )


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot product over the last axis (explicit sum: faster than einsum for length-3 vectors)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def intersect(shape: Shape3D, o: np.ndarray, d: np.ndarray, want_normal: bool = True):
    """Nearest hit ``t`` (inf on miss) of rays ``o + t d`` (``d`` unit) with ``shape``, and the normals."""
    c = shape.center.astype(np.float32)
    h = np.float32(shape.half)
    if shape.kind == "sphere":
        oc = o - c
        b = _dot(oc, d)
        disc = b * b - (_dot(oc, oc) - h * h)
        hit = disc > 0
        t = np.where(hit, -b - np.sqrt(np.maximum(disc, 0)), INF)
        t = np.where(t > EPS, t, INF)
        if not want_normal:
            return t, None
        n = (o + t[..., None] * d - c) / h
        return t, n
    if shape.kind == "cube":
        a = np.radians(shape.rotation)
        ca, sa = np.float32(np.cos(a)), np.float32(np.sin(a))
        oc = o - c
        # world → local: rotate by -a about z
        lo = np.stack([ca * oc[..., 0] + sa * oc[..., 1], -sa * oc[..., 0] + ca * oc[..., 1], oc[..., 2]], -1)
        ld = np.stack([ca * d[..., 0] + sa * d[..., 1], -sa * d[..., 0] + ca * d[..., 1], d[..., 2]], -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / np.where(np.abs(ld) < 1e-9, np.float32(1e-9), ld)
        t1 = (-h - lo) * inv
        t2 = (h - lo) * inv
        tlo = np.minimum(t1, t2)
        thi = np.maximum(t1, t2)
        tmin = tlo.max(-1)
        tmax = thi.min(-1)
        hit = (tmax >= tmin) & (tmin > EPS)
        t = np.where(hit, tmin, INF)
        if not want_normal:
            return t, None
        axis = tlo.argmax(-1)
        sign = -np.sign(np.take_along_axis(ld, axis[..., None], -1)[..., 0])
        nl = np.zeros(tlo.shape, dtype=np.float32)
        np.put_along_axis(nl, axis[..., None], sign[..., None].astype(np.float32), -1)
        n = np.stack([ca * nl[..., 0] - sa * nl[..., 1], sa * nl[..., 0] + ca * nl[..., 1], nl[..., 2]], -1)
        return t, n
    if shape.kind == "cylinder":
        ox = o[..., 0] - c[0]
        oy = o[..., 1] - c[1]
        oz = o[..., 2]
        dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
        a2 = dx * dx + dy * dy
        b = ox * dx + oy * dy
        cc = ox * ox + oy * oy - h * h
        disc = b * b - a2 * cc
        with np.errstate(divide="ignore", invalid="ignore"):
            ts = (-b - np.sqrt(np.maximum(disc, 0))) / np.maximum(a2, 1e-12)
            zs = oz + ts * dz
            side = (disc > 0) & (ts > EPS) & (zs >= 0) & (zs <= 2 * h)
            tc = (2 * h - oz) / np.where(np.abs(dz) < 1e-9, np.float32(1e-9), dz)
        cx = ox + tc * dx
        cy = oy + tc * dy
        cap = (tc > EPS) & (cx * cx + cy * cy <= h * h)
        t_side = np.where(side, ts, INF)
        t_cap = np.where(cap, tc, INF)
        t = np.minimum(t_side, t_cap)
        if not want_normal:
            return t, None
        use_cap = t_cap < t_side
        px = ox + t * dx
        py = oy + t * dy
        n = np.stack(
            [np.where(use_cap, 0, px / h), np.where(use_cap, 0, py / h), np.where(use_cap, 1, 0)], -1
        ).astype(np.float32)
        return t, n
    raise ValueError(f"unknown shape {shape.kind!r}")


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Separable box blur of a 2D array with radius ``r`` (edge-clamped), via cumulative sums."""
    if r <= 0:
        return a
    k = 2 * r + 1
    p = np.pad(a, r, mode="edge")
    c = np.cumsum(np.pad(p, ((1, 0), (0, 0))), axis=0, dtype=np.float32)
    p = (c[k:] - c[:-k]) / k
    c = np.cumsum(np.pad(p, ((0, 0), (1, 0))), axis=1, dtype=np.float32)
    return (c[:, k:] - c[:, :-k]) / k


GROUND_RGB = np.array([0.24, 0.24, 0.24], dtype=np.float32)  # linear; about sRGB 136
SKY = np.float32(0.16)


@dataclass
class RenderResult:
    image: np.ndarray  # (H, W, 3) uint8
    boxes: list[list[int] | None]  # visible 2D box per object, [x0, y0, x1, y1] (x1, y1 exclusive)
    visible: list[float]  # visible pixels per object
    unoccluded: list[float]  # pixels the object would cover with nothing in front of it
    clipped: list[bool]  # object's bounding sphere leaves the frame


@dataclass
class _Hits:
    t: np.ndarray  # (N,)
    oid: np.ndarray  # (N,) int16, -1 ground or sky
    normal: np.ndarray  # (N, 3)
    point: np.ndarray  # (N, 3)
    sky: np.ndarray  # (N,) bool
    unoccluded: list[int]


def _near(o: np.ndarray, d: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    """Rays (unit ``d``) that pass within ``radius`` of ``center`` in front of their origin."""
    v = center.astype(np.float32) - o
    along = v @ d.T if d.ndim == 1 else _dot(v, d)
    return (_dot(v, v) - along * along < radius * radius) & (along > -radius)


def _trace(shapes: list[Shape3D], o: np.ndarray, d: np.ndarray) -> _Hits:
    """Primary rays (N, 3) from one origin: nearest object or ground hit per ray."""
    dz = d[:, 2]
    with np.errstate(divide="ignore"):
        t = np.where(dz < -1e-6, -o[2] / np.minimum(dz, -1e-6), INF).astype(np.float32)
    oid = np.full(len(d), -1, dtype=np.int16)
    normal = np.zeros((len(d), 3), dtype=np.float32)
    normal[:, 2] = 1.0
    unocc = []
    for k, s in enumerate(shapes):
        idx = np.flatnonzero(_near(o, d, s.center, s.bound))
        if len(idx) == 0:
            unocc.append(0)
            continue
        tk, nk = intersect(s, o, d[idx])
        unocc.append(int((tk < INF).sum()))
        closer = tk < t[idx]
        sel = idx[closer]
        t[sel] = tk[closer]
        oid[sel] = k
        normal[sel] = nk[closer]
    sky = t >= INF
    point = o + np.where(sky, 0, t)[:, None] * d
    return _Hits(t, oid, normal, point, sky, unocc)


def _shadow(shapes: list[Shape3D], hits: _Hits, key: np.ndarray) -> np.ndarray:
    """1 where the key light is blocked by another object, else 0 (hard shadow rays)."""
    lit = (_dot(hits.normal, key) > 0) & ~hits.sky
    shadow = np.zeros(len(hits.t), dtype=np.float32)
    p = hits.point
    kz = max(float(key[2]), 0.05)
    for k, s in enumerate(shapes):
        c = s.center
        top = c[2] + s.bound
        g = c[:2] - key[:2] * (c[2] / kz)
        reach = s.bound / kz
        lo = np.minimum(c[:2] - s.bound, g - reach)
        hi = np.maximum(c[:2] + s.bound, g + reach)
        cand = lit & (hits.oid != k) & (p[:, 2] < top)
        cand &= (p[:, 0] > lo[0]) & (p[:, 0] < hi[0]) & (p[:, 1] > lo[1]) & (p[:, 1] < hi[1])
        idx = np.flatnonzero(cand)
        if len(idx) == 0:
            continue
        pts = p[idx] + hits.normal[idx] * np.float32(1e-3)
        near = _near(pts, key, c, s.bound)
        idx, pts = idx[near], pts[near]
        if len(idx) == 0:
            continue
        ts, _ = intersect(s, pts, np.broadcast_to(key, pts.shape), want_normal=False)
        shadow[idx[ts < INF]] = 1.0
    return shadow


def _shade(shapes: list[Shape3D], hits: _Hits, d: np.ndarray, shadow: np.ndarray, light: Light) -> np.ndarray:
    """Linear RGB per ray: Lambert key + fill + ambient; rubber with a faint sheen, metal with a sharp
    Blinn-Phong highlight and a sky/ground environment reflection. The ground (flat, matte) is shaded
    with constants; the full model runs only on object pixels."""
    key = _unit(light.key_dir)
    fill = _unit(light.fill_dir)
    col = np.empty((len(d), 3), dtype=np.float32)
    ground = hits.oid < 0
    g = np.flatnonzero(ground)
    p = hits.point[g]
    fall = 1.0 - 0.35 * np.clip(np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) / 14.0, 0, 1)
    kz = max(float(key[2]), 0.0)
    lum = (
        light.ambient + light.fill * max(float(fill[2]), 0.0) + light.key * kz * (1 - 0.82 * shadow[g])
    ) * fall
    col[g] = lum[:, None] * GROUND_RGB
    col[hits.sky] = SKY
    idx = np.flatnonzero(~ground)
    if len(idx) == 0:
        return col
    n = hits.normal[idx]
    dd = d[idx]
    oid = hits.oid[idx]
    rgb = np.array([s.rgb for s in shapes], dtype=np.float32)
    is_metal = np.array([s.metal for s in shapes], dtype=bool)
    base = rgb[oid]
    metal = is_metal[oid]
    nk = _dot(n, key)
    sh = np.where(nk > 0, shadow[idx], 1.0)  # faces turned away are dark anyway
    ndl = np.maximum(nk, 0) * (1 - 0.82 * sh)
    ndf = np.maximum(_dot(n, fill), 0)
    diffuse = light.ambient + light.key * ndl + light.fill * ndf
    half_v = key - dd
    half_v /= np.sqrt(_dot(half_v, half_v))[:, None]
    ndh = np.maximum(_dot(n, half_v), 0) * (1 - sh)
    refl = dd - 2 * _dot(dd, n)[:, None] * n
    # A studio environment: dark floor, bright sky, and a soft bright window toward the fill light.
    env = (
        0.06
        + 0.8 * np.clip((refl[:, 2] + 0.05) / 0.5, 0, 1) ** 1.5
        + 0.5 * np.maximum(_dot(refl, fill), 0) ** 6
    )
    rubber = base * diffuse[:, None] + (0.05 * ndh**8)[:, None]
    shiny = base * (0.15 * diffuse + 0.85 * env)[:, None] + (1.2 * ndh**60 + 0.1 * ndh**6)[:, None]
    col[idx] = np.where(metal[:, None], shiny, rubber)
    return col


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def _rays(cam: Camera, width: int, height: int, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Unit ray directions through pixel coordinates (sx, sy) (pixel units, centres at +0.5)."""
    fwd, right, up = (v.astype(np.float32) for v in cam.basis())
    tan_h = np.float32(np.tan(np.radians(cam.fov) / 2))
    tan_v = tan_h * np.float32(height / width)
    x = (sx / np.float32(width) * 2 - 1) * tan_h
    y = (1 - sy / np.float32(height) * 2) * tan_v
    d = fwd + x[:, None] * right + y[:, None] * up
    return d / np.sqrt(_dot(d, d))[:, None]


def render(
    shapes: list[Shape3D], cam: Camera, light: Light, width: int, height: int, antialias: bool = True
) -> RenderResult:
    """Render ``shapes`` to an 8-bit RGB image and report each object's visible 2D box.

    One ray per pixel, then (``antialias``) 4 more rays in each pixel on an object silhouette: most of a
    supersampled image's quality for a few percent more rays.
    """
    W, H = width, height
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    d = _rays(cam, W, H, jj.ravel() + 0.5, ii.ravel() + 0.5)
    o = np.asarray(cam.position, dtype=np.float32)
    key = _unit(light.key_dir)
    hits = _trace(shapes, o, d)
    shadow = _box_blur(_shadow(shapes, hits, key).reshape(H, W), max(1, round(W / 200))).ravel()
    col = _shade(shapes, hits, d, shadow, light)
    oid = hits.oid.reshape(H, W)
    if antialias and shapes:
        edge = np.zeros((H, W), dtype=bool)
        dh = oid[:, 1:] != oid[:, :-1]
        dv = oid[1:] != oid[:-1]
        edge[:, 1:] |= dh
        edge[:, :-1] |= dh
        edge[1:] |= dv
        edge[:-1] |= dv
        idx = np.flatnonzero(edge)
        if len(idx):
            offs = np.array([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]], dtype=np.float32)
            sx = (jj.ravel()[idx][:, None] + offs[:, 0]).ravel()
            sy = (ii.ravel()[idx][:, None] + offs[:, 1]).ravel()
            ds = _rays(cam, W, H, sx, sy)
            sub = _trace(shapes, o, ds)
            sub_shadow = np.maximum(_shadow(shapes, sub, key), np.repeat(shadow[idx], 4) * (sub.oid < 0))
            sub_col = _shade(shapes, sub, ds, sub_shadow, light).reshape(len(idx), 4, 3)
            col[idx] = sub_col.mean(1)
    img = (np.clip(col, 0, 1) ** np.float32(1 / 2.2) * 255 + 0.5).astype(np.uint8).reshape(H, W, 3)

    boxes: list[list[int] | None] = []
    visible: list[float] = []
    clipped: list[bool] = []
    for k, s in enumerate(shapes):
        m = oid == k
        visible.append(float(m.sum()))
        clipped.append(not in_frame(s, cam, W, H))
        if not m.any():
            boxes.append(None)
            continue
        rows = np.flatnonzero(m.any(1))
        cols = np.flatnonzero(m.any(0))
        boxes.append([int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1])
    return RenderResult(img, boxes, visible, [float(u) for u in hits.unoccluded], clipped)
