"""Probe sets in another look: the generator's default scenes with at most MAX_OBJECTS objects each (before
an add) and every object SCALE times larger. A probe, not a generator feature: it patches the generator's
object sampler and sizes for this process and its workers (the journal's "Where shape is lost").

    python projects/demo_model_v2/probe_data.py OUT SCENES SEED MAX_OBJECTS SCALE [VAL_FRAC]
"""

from __future__ import annotations

import sys

import clip4idc.data.synthetic.scene as scene
import clip4idc.data.synthetic.writer as writer


def main(out: str, scenes: str, seed: str, max_objects: str, scale: str, val_frac: str = "0") -> None:
    sample = writer.sample_objects
    writer.sample_objects = lambda rng, n: sample(rng, min(n, int(max_objects)))
    writer.make_scene.__defaults__ = (400,)  # larger objects need more tries for a layout that fits
    for size in scene.SIZES:
        scene.SIZES[size] *= float(scale)
    writer.generate(out, pairs=int(scenes), seed=int(seed), workers=2, val_frac=float(val_frac), test_frac=0.0,
                    progress=False)  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
