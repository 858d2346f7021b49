"""Synthetic CLEVR-Change: CLEVR-like 3D scenes rendered by a numpy ray caster, one semantic change each.

``generate(out, pairs, ...)`` writes the official CLEVR-Change layout plus ``scenes.json`` (every object's
attributes, 3D position and 2D box in each image, and what changed), so the same readers, training and
evaluation run on it, and localisation (pointing game) and per-type analysis become possible.
"""

from __future__ import annotations

from .scenes import change_boxes, load_scenes
from .writer import generate, make_scene

__all__ = ["generate", "make_scene", "load_scenes", "change_boxes", "plot_triples"]


def plot_triples(*args, **kwargs):
    """See :func:`clip4idc.data.synthetic.plot.plot_triples` (imported lazily: matplotlib is slow)."""
    from .plot import plot_triples as _plot

    return _plot(*args, **kwargs)
