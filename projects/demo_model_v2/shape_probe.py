"""Does a vision tower *see* each object's shape? Two probes on the token of the patch under an object's box
centre (the journal's "Where shape is lost"):

* ``linear MODEL``: a linear probe of size, colour, material and shape from that token after each block,
  for MODEL, for the same architecture with random weights, and for the raw pixels of a two-patch window
  centred on the object (what the image holds at the model's resolution);
* ``supervised PATCH SECONDS``: the demo-size tower trained from random weights on shape alone (a linear
  head on that token) for a fixed wall-clock budget, at patch size PATCH: can it learn shape at all, and
  how fast per second of CPU?

    python projects/demo_model_v2/shape_probe.py linear [MODEL] [TRAIN_SCENES]
    python projects/demo_model_v2/shape_probe.py supervised PATCH SECONDS [TRAIN_DATA TEST_DATA]

Training objects come from the first scenes of data/demo_scenes, test objects from data/demo_test_2208.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import clip4idc
from clip4idc.data.datasets import ImageCache
from clip4idc.data.pretraining import described_images
from clip4idc.data.synthetic.describe import ATTRIBUTES, VALUES
from clip4idc.data.synthetic.scenes import read_scene_file
from clip4idc.network.config import ModelConfig
from clip4idc.network.model import CLIP4IDC
from clip4idc.preprocess import CLIP_MEAN, CLIP_STD

TRAIN, TEST = "data/demo_scenes", "data/demo_test_2208"  # the defaults; supervised takes others


def objects(root: str, scenes: int, resolution: int) -> tuple[torch.Tensor, np.ndarray]:
    """The images of the first ``scenes`` scenes as uint8 (M, 3, R, R) and one row per object:
    image index, box centre x and y (fractions of the image), then its attribute indices."""
    ids = list(read_scene_file(root)["scenes"])[:scenes]
    images, (w, h) = described_images(root, ids)
    cache = ImageCache(resolution, cache_dir=f"{root}/.cache{resolution}")
    x = torch.from_numpy(np.stack([cache.uint8(path) for path, _ in images]))
    rows = [
        [i, (o.box[0] + o.box[2]) / 2 / w, (o.box[1] + o.box[3]) / 2 / h]
        + [VALUES[a].index(o.value(a)) for a in ATTRIBUTES]
        for i, (_, seen) in enumerate(images)
        for o in seen
    ]
    return x, np.array(rows)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (M, 3, R, R) → CLIP-normalised, as every image the model is given."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (CLIP_MEAN, CLIP_STD))
    return (x.float() / 255 - mean) / std


def token_index(rows: np.ndarray, grid: int) -> np.ndarray:
    """Each object's token: 1 + the patch under its box centre (0 is the class token)."""
    col = np.minimum(grid - 1, (rows[:, 1] * grid).astype(int))
    row = np.minimum(grid - 1, (rows[:, 2] * grid).astype(int))
    return 1 + row * grid + col


def block_tokens(model: CLIP4IDC, x: torch.Tensor) -> list[torch.Tensor]:
    """The tokens after the patch embedding and after each block, every block on the image alone."""
    v = model.clip.visual
    t = v.embed_patches(normalise(x))
    out = [t]
    for block in v.transformer.resblocks:
        t, _ = block(t, None, False)
        out.append(t)
    return out


@torch.no_grad()
def object_features(model: CLIP4IDC, x: torch.Tensor, rows: np.ndarray, pixels: bool) -> list[torch.Tensor]:
    cfg = model.config
    grid, feats = cfg.resolution // cfg.patch, []
    for start in range(0, len(x), 128):
        mine = rows[(rows[:, 0] >= start) & (rows[:, 0] < start + 128)]
        local = mine[:, 0].astype(int) - start
        if pixels:  # a (2 patch)^2 window centred on the object
            r = cfg.patch
            padded = F.pad(normalise(x[start : start + 128]), (r, r, r, r))
            px = (mine[:, 1] * cfg.resolution).astype(int)
            py = (mine[:, 2] * cfg.resolution).astype(int)
            win = [padded[i, :, y : y + 2 * r, c : c + 2 * r].flatten() for i, c, y in zip(local, px, py)]
            feats.append([torch.stack(win)])
        else:
            idx = torch.from_numpy(token_index(mine, grid))
            feats.append(
                [t[torch.from_numpy(local), idx] for t in block_tokens(model, x[start : start + 128])]
            )
    return [torch.cat([f[k] for f in feats]).float() for k in range(len(feats[0]))]


def linear_probe(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, k: int) -> float:
    """Test accuracy (%) of an L2-regularised softmax regression on standardised features."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-5
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    head = torch.nn.Linear(xtr.shape[1], k)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(xtr), ytr) + 1e-3 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return 100 * float((head(xte).argmax(1) == yte).float().mean())


def linear(source: str = "clip-standin", train_scenes: str = "1500") -> None:
    model = clip4idc.load(source).eval()
    torch.manual_seed(0)
    random = CLIP4IDC(model.config).eval()
    res = model.config.resolution
    xtr, rtr = objects(TRAIN, int(train_scenes), res)
    xte, rte = objects(TEST, 1100, res)
    print(f"objects: {len(rtr)} training ({len(xtr)} images), {len(rte)} test ({len(xte)} images)")
    for name, m, pixels in (("pixels", model, True), (source, model, False), ("random", random, False)):
        ftr, fte = object_features(m, xtr, rtr, pixels), object_features(m, xte, rte, pixels)
        for layer, (a, b) in enumerate(zip(ftr, fte)):
            accs = [
                linear_probe(
                    a,
                    torch.from_numpy(rtr[:, 3 + j]).long(),
                    b,
                    torch.from_numpy(rte[:, 3 + j]).long(),
                    len(VALUES[att]),
                )
                for j, att in enumerate(ATTRIBUTES)
            ]
            where = "window" if pixels else f"block {layer}"
            print(
                f"{name:13s} {where:8s} "
                + "  ".join(f"{att} {acc:5.1f}" for att, acc in zip(ATTRIBUTES, accs)),
                flush=True,
            )


def supervised(patch: str, seconds: str, train: str = TRAIN, test: str = TEST) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict({**clip4idc.load("clip-standin").config.to_dict(), "patch": int(patch)})
    model = CLIP4IDC(cfg).train()
    head = torch.nn.Linear(cfg.vision_width, 3)
    grid, shape = cfg.resolution // cfg.patch, 3 + ATTRIBUTES.index("shape")
    xtr, rtr = objects(train, 6000, cfg.resolution)
    xte, rte = objects(test, 500, cfg.resolution)
    params = list(model.clip.visual.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.05)
    by_image: dict[int, list[int]] = {}
    for k, i in enumerate(rtr[:, 0].astype(int)):
        by_image.setdefault(int(i), []).append(k)

    @torch.no_grad()
    def test() -> float:
        model.eval()
        correct = 0
        for start in range(0, len(xte), 128):
            mine = rte[(rte[:, 0] >= start) & (rte[:, 0] < start + 128)]
            t = block_tokens(model, xte[start : start + 128])[-1]
            logits = head(
                t[torch.from_numpy(mine[:, 0].astype(int) - start), torch.from_numpy(token_index(mine, grid))]
            )
            correct += int((logits.argmax(1) == torch.from_numpy(mine[:, shape].astype(int))).sum())
        model.train()
        return 100 * correct / len(rte)

    rng, start, step = np.random.default_rng(0), time.time(), 0
    while time.time() - start < float(seconds):
        batch = rng.choice(len(xtr), 64, replace=False)
        mine = rtr[np.concatenate([by_image[int(i)] for i in batch])]
        where = {int(i): j for j, i in enumerate(batch)}
        t = block_tokens(model, xtr[batch])[-1]
        logits = head(t[[where[int(i)] for i in mine[:, 0]], token_index(mine, grid)])
        loss = F.cross_entropy(logits, torch.from_numpy(mine[:, shape].astype(int)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(
                f"step {step} ({64 * step} images, {time.time() - start:.0f} s): test shape {test():.1f} %",
                flush=True,
            )
    print(
        f"patch {patch}: {step} steps, {64 * step} images, {time.time() - start:.0f} s: test shape {test():.1f} %"
    )


if __name__ == "__main__":
    torch.set_num_threads(2)
    {"linear": linear, "supervised": supervised}[sys.argv[1]](*sys.argv[2:])
