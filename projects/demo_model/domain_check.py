"""Fit, calibrate and measure the bundled model's domain check (clip4idc/weights/domain.py).

    .venv/bin/python projects/demo_model/domain_check.py [--write] [--model clip4idc/weights/demo]

Three fresh synthetic sets, each made by ``clip4idc data synth`` at the training data's 160 × 120 from a
seed the training never saw: *fit* (the statistics), *calibration* (the threshold, together with
out-of-domain pairs from another random seed) and *test* (the rates). Out-of-domain pairs are made
offline from images shipped inside installed packages (matplotlib's sample data, gradio's media assets,
Pillow's test images when installed) with a disk or a rectangle painted on, random textures, and the test
scenes under heavy colour casts. ``--write`` saves ``domain.safetensors`` into the model folder; the
rates table is printed either way.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import clip4idc
from clip4idc.data.synthetic.writer import DEFAULT_SIZE
from clip4idc.preprocess import preprocess_pairs
from clip4idc.weights.domain import (
    DomainStats,
    choose_threshold,
    fit_domain,
    pair_scores,
    patch_embeddings,
    save_domain,
)

ROOT = Path(__file__).resolve().parents[2]
SIZE = DEFAULT_SIZE  # the generator's default: the training data's size
SEEDS = {"fit": 2601, "calibration": 2602, "test": 2603, "test_320": 2604}
SCENES = {"fit": 600, "calibration": 400, "test": 1000, "test_320": 200}
DESCRIPTION = (
    "synthetic CLEVR-style scenes (coloured cubes, spheres and cylinders on a grey floor), rendered at "
    "160×120"
)
MAX_FALSE_ALARMS = 0.01  # on the calibration pairs; the target on the test pairs is 2 %
Pair = tuple[Image.Image, Image.Image]


def synth(name: str, out: Path) -> Path:
    """A fresh synthetic set, made once, with the command a user would run."""
    folder = out / name
    size = "320x240" if name == "test_320" else f"{SIZE[0]}x{SIZE[1]}"
    if not (folder / "splits.json").exists():
        cmd = [sys.executable, "-m", "clip4idc.cli", "data", "synth", str(folder), "--pairs"]
        cmd += [str(SCENES[name]), "--size", size, "--seed", str(SEEDS[name]), "--workers", "2"]
        subprocess.run([*cmd, "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    return folder


def scene_pairs(folder: Path) -> list[Pair]:
    """Every scene's change pair and no-change pair (before with its distractor)."""
    pairs = []
    for before in sorted((folder / "images").glob("*.png")):
        bef = Image.open(before).convert("RGB")
        for sub, word in (("sc_images", "semantic"), ("nsc_images", "nonsemantic")):
            other = folder / sub / before.name.replace("default", word)
            pairs.append((bef, Image.open(other).convert("RGB")))
    return pairs


def package_photos() -> list[Path]:
    """Images that ship inside installed packages (no download)."""
    import matplotlib

    found = sorted(Path(matplotlib.get_data_path(), "sample_data").glob("*.[jp][pn]g"))
    for package in ("gradio", "PIL"):
        try:
            base = Path(__import__(package).__file__).parent
        except ImportError:
            continue
        for sub in ("media_assets/images", "Tests/images"):
            found += sorted(
                p for p in (base / sub).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
            )
    return found


def paint(image: Image.Image, rng: np.random.Generator, shape: str) -> Image.Image:
    """The image with a disk or a rectangle of a random colour painted on."""
    out = image.copy()
    w, h = out.size
    r = int(rng.integers(min(w, h) // 12, min(w, h) // 5))
    x, y = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    box = (x - r, y - r, x + r, y + int(r * rng.uniform(0.5, 1.5)))
    (ImageDraw.Draw(out).ellipse if shape == "disk" else ImageDraw.Draw(out).rectangle)(box, fill=colour)
    return out


def photo_pairs(photos: list[Path], count: int, shape: str, seed: int) -> list[Pair]:
    """Random crops of the photos at the domain's size, with ``shape`` painted on the after image."""
    rng = np.random.default_rng(seed)
    images = [Image.open(p).convert("RGB") for p in photos]
    pairs = []
    for i in range(count):
        img = images[i % len(images)]
        scale = rng.uniform(0.4, 1.0)
        cw, ch = max(8, int(img.width * scale)), max(8, int(img.height * scale))
        x, y = int(rng.integers(0, img.width - cw + 1)), int(rng.integers(0, img.height - ch + 1))
        before = img.crop((x, y, x + cw, y + ch)).resize(SIZE, Image.BICUBIC)
        pairs.append((before, paint(before, rng, shape)))
    return pairs


def texture_pairs(count: int, seed: int) -> list[Pair]:
    """Uniform noise, blocky noise and stripes, with a disk painted on."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    pairs = []
    for i in range(count):
        if i % 3 == 0:
            arr = rng.integers(0, 256, (h, w, 3))
        elif i % 3 == 1:
            cell = int(rng.integers(4, 20))
            arr = np.kron(rng.integers(0, 256, (h // cell + 1, w // cell + 1, 3)), np.ones((cell, cell, 1)))
        else:
            fx, fy = rng.uniform(0.02, 0.4, 2)
            phase = rng.uniform(0, 6.3, 3)
            arr = 127.5 + 127.5 * np.sin(
                np.arange(w)[None, :, None] * fx + np.arange(h)[:, None, None] * fy + phase
            )
        before = Image.fromarray(np.clip(arr[:h, :w], 0, 255).astype(np.uint8))
        pairs.append((before, paint(before, rng, "disk")))
    return pairs


def colour_cast(pairs: list[Pair], seed: int) -> list[Pair]:
    """Scenes under a heavy colour cast: channel gains at least 2.5 apart, or a 50-70 % tint."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (bef, aft) in enumerate(pairs):
        if i % 2 == 0:
            gains = rng.permutation([rng.uniform(0.25, 0.45), rng.uniform(0.6, 1.0), rng.uniform(1.3, 1.8)])
            cast: Callable[[np.ndarray], np.ndarray] = lambda x, g=gains: x * g  # noqa: E731
        else:
            tint, amount = (
                rng.permutation([255.0, rng.uniform(0, 80), rng.uniform(0, 255)]),
                rng.uniform(0.5, 0.7),
            )
            cast = lambda x, t=tint, a=amount: (1 - a) * x + a * t  # noqa: E731
        out.append(
            tuple(
                Image.fromarray(np.clip(cast(np.asarray(im, np.float32)), 0, 255).astype(np.uint8))
                for im in (bef, aft)
            )
        )
    return out


def batches(model: torch.nn.Module, pairs: list[Pair]):  # noqa: ANN201
    """Preprocessed (before, after) batches of 64 pairs."""
    for i in range(0, len(pairs), 64):
        batch = pairs[i : i + 64]
        yield preprocess_pairs([p[0] for p in batch], [p[1] for p in batch], model.config.resolution)


def embeddings_of(model: torch.nn.Module, pairs: list[Pair]) -> torch.Tensor:
    """Patch embeddings (B, 2, P, W) of all pairs."""
    return torch.cat([patch_embeddings(model, bef, aft) for bef, aft in batches(model, pairs)])


def scores_of(model: torch.nn.Module, stats: DomainStats, pairs: list[Pair]) -> list[float]:
    return [s for bef, aft in batches(model, pairs) for s in pair_scores(model, stats, bef, aft).tolist()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "clip4idc/weights/demo"), help="saved model folder")
    parser.add_argument("--data", default=str(ROOT / "data/domain_check"), help="where the scenes are made")
    parser.add_argument("--write", action="store_true", help="save domain.safetensors into --model")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = clip4idc.load(args.model)
    data = Path(args.data)
    sets = {name: scene_pairs(synth(name, data)) for name in SEEDS}
    photos = package_photos()
    matplotlib_photos = [p for p in photos if "matplotlib" in str(p)]

    stats = fit_domain(embeddings_of(model, sets["fit"]), DESCRIPTION)
    held_out_outside = (
        photo_pairs(matplotlib_photos, 60, "disk", 11)
        + texture_pairs(30, 12)
        + colour_cast(sets["calibration"][:60], 13)
    )
    inside = scores_of(model, stats, sets["calibration"])
    outside = scores_of(model, stats, held_out_outside)
    threshold = round(choose_threshold(inside, outside, MAX_FALSE_ALARMS), 3)
    calibration = {
        "shrinkage": stats.calibration["shrinkage"],
        "fit_pairs": len(sets["fit"]),
        "calibration_pairs_inside": len(inside),
        "calibration_pairs_outside": len(outside),
        "max_false_alarms": MAX_FALSE_ALARMS,
        "seeds": SEEDS,
        "command": "python projects/demo_model/domain_check.py --write",
    }
    stats = DomainStats(
        DESCRIPTION, threshold, stats.mean, stats.covariance, stats.typical, calibration=calibration
    )
    print(
        f"threshold {threshold} (calibration: in-domain q99 {np.quantile(inside, 0.99):.3f}, "
        f"out-of-domain min {min(outside):.3f}); typical distances {stats.typical}"
    )

    examples = [
        (Image.open(ex["before"]).convert("RGB"), Image.open(ex["after"]).convert("RGB"))
        for ex in __import__("clip4idc.data.examples", fromlist=["load_examples"]).load_examples()
    ]
    rows = [
        ("in-domain: test scenes 160×120 (change + no-change pairs)", sets["test"], False),
        ("in-domain: test scenes 320×240", sets["test_320"], False),
        ("in-domain: the bundled example pairs", examples, False),
        ("photos from installed packages + painted disk", photo_pairs(photos, 200, "disk", 21), True),
        (
            "photos from installed packages + painted rectangle",
            photo_pairs(photos, 200, "rectangle", 22),
            True,
        ),
        ("random textures and noise + painted disk", texture_pairs(300, 23), True),
        ("test scenes under heavy colour casts", colour_cast(sets["test"][:400], 24), True),
    ]
    print(f"\nphotos: {', '.join(p.name for p in photos)}\n")
    print("| pairs | n | flagged | median score |\n| --- | --- | --- | --- |")
    for label, pairs, out_of_domain in rows:
        s = np.array(scores_of(model, stats, pairs))
        flagged = float((s > threshold).mean())
        role = "target ≥ 95 %" if out_of_domain else "false alarms, target ≤ 2 %"
        print(f"| {label} | {len(s)} | **{100 * flagged:.1f} %** ({role}) | {np.median(s):.2f} |")
    if args.write:
        print(f"\nwrote {save_domain(stats, args.model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
