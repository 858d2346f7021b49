"""Does a direct, per-object contrastive signal teach the stand-in's tokens shape? Continue the bundled
stand-in for SECONDS of wall-clock on its image-description loss plus WEIGHT x an object-phrase term: each
object's token (the patch under its box centre, through ``ln_post`` and the projection, as the class token
is) against all 96 phrases "size colour material shape", one cross-entropy over them (the journal's "Where
shape is lost"); with ``random``, the same from random weights. Then the zero-shot scores on the test
images and each test object's token classified against the 96 phrases.

    python projects/demo_model_v2/object_phrase_probe.py WEIGHT SECONDS [LR [clip-standin|random]]
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import clip4idc
from clip4idc.data.pretraining import DescriptionDataset, described_images
from clip4idc.data.readers import load_pairs
from clip4idc.data.synthetic.describe import ATTRIBUTES, VALUES, describe
from clip4idc.data.synthetic.scenes import read_scene_file
from clip4idc.evaluation.descriptions import description_accuracy
from clip4idc.network.model import CLIP4IDC
from clip4idc.tokenizer import default_tokenizer, trim_padding

sys.path.insert(0, str(Path(__file__).parent))
from shape_probe import TEST, TRAIN, block_tokens, normalise, objects, token_index  # noqa: E402

COMBOS = list(itertools.product(*(range(len(VALUES[a])) for a in ATTRIBUTES)))
PHRASES = [" ".join(VALUES[a][i] for a, i in zip(ATTRIBUTES, c)) for c in COMBOS]


def object_embeddings(model: CLIP4IDC, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    v, grid = model.clip.visual, model.config.resolution // model.config.patch
    t = block_tokens(model, x)[-1]
    t = t[torch.from_numpy(rows[:, 0].astype(int)), torch.from_numpy(token_index(rows, grid))]
    return F.normalize(v.ln_post(t) @ v.proj, dim=-1)


def main(weight: str, seconds: str, lr: str = "1e-4", init: str = "clip-standin") -> None:
    torch.manual_seed(0)
    model = clip4idc.load("clip-standin")
    if init == "random":  # the term from the first step, as a pretraining option would use it
        model = CLIP4IDC(model.config)
    tok = default_tokenizer()
    xtr, rtr = objects(TRAIN, 6000, model.config.resolution)
    images, (w, h) = described_images(TRAIN, list(read_scene_file(TRAIN)["scenes"])[:6000])
    descriptions = [describe(seen, w, h) for _, seen in images]
    phrase_ids, _ = tok.batch(PHRASES, 8)
    index = {c: k for k, c in enumerate(COMBOS)}
    labels = torch.tensor([index[tuple(int(v) for v in r[3:7])] for r in rtr])
    by_image: dict[int, list[int]] = {}
    for k, i in enumerate(rtr[:, 0].astype(int)):
        by_image.setdefault(int(i), []).append(k)
    opt = torch.optim.AdamW(model.parameters(), lr=float(lr), weight_decay=0.05)
    rng, start, step = np.random.default_rng(0), time.time(), 0
    model.train()
    while time.time() - start < float(seconds):
        batch = rng.choice(len(xtr), 64, replace=False)
        mine = np.concatenate([by_image[int(i)] for i in batch])
        rows = rtr[mine].copy()
        where = {int(i): j for j, i in enumerate(batch)}
        rows[:, 0] = [where[int(i)] for i in rows[:, 0]]
        scale = model.clip.logit_scale.exp()
        image = F.normalize(model.clip.encode_image(normalise(xtr[batch])), dim=-1)
        ids, _ = tok.batch([descriptions[i] for i in batch], 77)
        text = F.normalize(model.clip.encode_text(trim_padding(ids))[0], dim=-1)
        logits = scale * image @ text.t()
        target = torch.arange(len(batch))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        if float(weight):
            phrases = F.normalize(model.clip.encode_text(phrase_ids)[0], dim=-1)
            obj = object_embeddings(model, xtr[batch], rows)
            loss = loss + float(weight) * F.cross_entropy(scale * obj @ phrases.t(), labels[mine])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.clip.logit_scale.clamp_(max=math.log(100))
        step += 1
        if step % 25 == 0:
            print(f"step {step} ({time.time() - start:.0f} s) loss {loss.item():.3f}", flush=True)
    model.eval()
    out = {
        "init": init,
        "weight": float(weight),
        "lr": float(lr),
        "steps": step,
        "seconds": round(time.time() - start),
    }
    test = DescriptionDataset(load_pairs(TEST, "clevr", "test"), resolution=model.config.resolution)
    out["zero-shot"] = {k: round(v, 1) for k, v in description_accuracy(model, test).items() if k != "chance"}
    xte, rte = objects(TEST, 1100, model.config.resolution)
    with torch.no_grad():
        phrases = F.normalize(model.clip.encode_text(phrase_ids)[0], dim=-1)
        predicted = []
        for s in range(0, len(xte), 128):
            rows = rte[(rte[:, 0] >= s) & (rte[:, 0] < s + 128)].copy()
            rows[:, 0] -= s
            predicted.append((object_embeddings(model, xte[s : s + 128], rows) @ phrases.t()).argmax(1))
    combos = torch.tensor([COMBOS[p] for p in torch.cat(predicted).tolist()])
    for j, a in enumerate(ATTRIBUTES):
        out[f"token {a}"] = round(
            100 * float((combos[:, j] == torch.from_numpy(rte[:, 3 + j])).float().mean()), 1
        )
    print(json.dumps(out))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(*sys.argv[1:])
