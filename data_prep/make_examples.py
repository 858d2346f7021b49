"""Regenerate the app's bundled example pairs (``clip4idc/assets/examples``) with the synthetic generator.

Why a script: the examples must be reproducible from the code, not hand-picked files. It renders a few
synthetic CLEVR-Change scenes (fixed seed), keeps the first scene of each change type (color, material,
add, drop, move) plus one no-change pair (a scene's before image against its distractor, which differs
only by camera and light jitter), and writes small PNGs and ``examples.json``:

    python data_prep/make_examples.py            # → clip4idc/assets/examples
    python data_prep/make_examples.py --out DIR --seed 0 --size 320x240
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

CHANGE_TYPES = ("color", "material", "add", "drop", "move")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "clip4idc" / "assets" / "examples"


def make_examples(
    out: Path, seed: int = 0, size: tuple[int, int] = (320, 240), pairs: int = 10
) -> list[dict]:
    """Render ``pairs`` scenes and copy one per change type + one no-change pair to ``out``."""
    from clip4idc.data.synthetic import change_boxes, generate, load_scenes

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, pairs, size=size, seed=seed, progress=False)
        scenes = load_scenes(root)
        change_caps = json.loads((root / "change_captions.json").read_text())
        nc_caps = json.loads((root / "no_change_captions.json").read_text())
        chosen: dict[str, str] = {}
        for sid in sorted(scenes, key=int):
            chosen.setdefault(scenes[sid]["change"]["type"], sid)
        missing = [t for t in CHANGE_TYPES if t not in chosen]
        if missing:
            raise SystemExit(f"no scene of type {missing} among {pairs} pairs; raise --pairs")
        records = []
        for kind in (*CHANGE_TYPES, "none"):
            sid = chosen[CHANGE_TYPES[0]] if kind == "none" else chosen[kind]
            scene = scenes[sid]
            images = scene["images"]
            name = Path(images["before"]).name
            after_key = "distractor" if kind == "none" else "after"
            bef, aft = f"{kind}_before.png", f"{kind}_after.png"
            shutil.copyfile(root / images["before"], out / bef)
            shutil.copyfile(root / images[after_key], out / aft)
            record = {
                "name": "no change" if kind == "none" else kind,
                "change_type": kind,
                "before": bef,
                "after": aft,
                "caption": (nc_caps[name] if kind == "none" else change_caps[name])[0],
                "boxes": {"before": [], "after": []} if kind == "none" else change_boxes(scene),
                "source": {"generator": "clip4idc.data.synthetic", "seed": seed, "scene": int(sid)},
            }
            records.append(record)
    (out / "examples.json").write_text(json.dumps({"size": list(size), "examples": records}, indent=1) + "\n")
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="320x240", help="WxH")
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    records = make_examples(args.out, args.seed, (width, height), args.pairs)
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {len(records)} example pairs to {args.out} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
