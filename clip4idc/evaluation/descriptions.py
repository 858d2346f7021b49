"""Is it a real CLIP? Zero-shot checks of a single-image CLIP on synthetic scenes and their descriptions.

Two questions, asked of :meth:`clip4idc.network.clip.CLIP.encode_image` and the text tower:

* **retrieval**: which of the val images' descriptions is this image's? (R@1 image→description, chance
  ``1/n``);
* **attributes**: for one object of each image, does the image prefer its true description to every
  description that differs only in that object's ``size`` (chance 1/2), ``color`` (1/8), ``material`` (1/2)
  or ``shape`` (1/3)? ``attributes`` is the mean of the four accuracies.

The choices of object are seeded, so two models are asked exactly the same questions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data.pretraining import DescriptionDataset, trim_padding
from ..data.synthetic.describe import ATTRIBUTES, VALUES, change_attribute, describe
from ..network.model import CLIP4IDC
from ..precision import autocast

CHANCE = {a: 1 / len(VALUES[a]) for a in ATTRIBUTES}


@torch.no_grad()
def _embed_texts(
    model: CLIP4IDC, dataset: DescriptionDataset, texts: list[str], batch: int, device
) -> torch.Tensor:
    out = []
    for i in range(0, len(texts), batch):
        ids, _ = dataset.tokenizer.batch(texts[i : i + batch], dataset.max_words)
        emb, _ = model.encode_text(trim_padding(ids).to(device))
        out.append(torch.nn.functional.normalize(emb.float(), dim=-1))
    return torch.cat(out)


@torch.no_grad()
def description_accuracy(
    model: CLIP4IDC,
    dataset: DescriptionDataset,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    max_images: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """R@1 image→description over ``dataset``'s images (the first ``max_images``) and the per-attribute
    accuracies described in the module docstring, with their chance levels."""
    model.eval()
    n = min(len(dataset), max_images or len(dataset))
    images = []
    with autocast(device, precision):
        for i in range(0, n, batch_size):
            x = torch.stack([dataset[j]["image"] for j in range(i, min(n, i + batch_size))]).to(device)
            images.append(torch.nn.functional.normalize(model.clip.encode_image(x).float(), dim=-1))
        image = torch.cat(images)
        texts = _embed_texts(model, dataset, [dataset.description(j) for j in range(n)], batch_size, device)
        sim = image @ texts.t()
        out: dict[str, Any] = {
            "R@1": float((sim.argmax(dim=1) == torch.arange(n, device=sim.device)).float().mean()) * 100,
            "images": n,
            "chance": {"R@1": 100 / n, **{a: 100 * c for a, c in CHANCE.items()}},
        }
        rng = np.random.default_rng(seed)
        for attribute in ATTRIBUTES:
            questions, sizes = [], []
            for j in range(n):
                _, objects = dataset.items[j]
                k = int(rng.integers(len(objects)))
                options = [objects[k].value(attribute)] + [
                    v for v in VALUES[attribute] if v != objects[k].value(attribute)
                ]
                questions += [
                    describe(change_attribute(objects, k, attribute, v), dataset.width, dataset.height)
                    for v in options
                ]
                sizes.append(len(options))
            emb = _embed_texts(model, dataset, questions, batch_size * 4, device)
            starts = np.cumsum([0, *sizes[:-1]])
            right = 0
            for j, (s, size) in enumerate(zip(starts, sizes)):
                scores = emb[s : s + size] @ image[j]
                right += int(scores[0] > scores[1:].max())
            out[attribute] = 100 * right / n
    out["attributes"] = float(np.mean([out[a] for a in ATTRIBUTES]))
    return out


__all__ = ["CHANCE", "description_accuracy"]
