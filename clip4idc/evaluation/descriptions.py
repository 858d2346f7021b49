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
import torch.nn.functional as F

from ..data.pretraining import DescriptionDataset
from ..data.synthetic.describe import ATTRIBUTES, VALUES, change_attribute, describe
from ..network.inference import encode_texts
from ..network.model import CLIP4IDC
from ..precision import autocast

CHANCE = {a: 1 / len(VALUES[a]) for a in ATTRIBUTES}


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
    paths = [path for path, _ in dataset.items[:n]]
    images = []
    for i in range(0, n, batch_size):
        x = torch.stack([dataset.images.tensor(p) for p in paths[i : i + batch_size]]).to(device)
        with autocast(device, precision):
            images.append(model.clip.encode_image(x).float().cpu())
    image = F.normalize(torch.cat(images), dim=-1)

    def embed(texts: list[str]) -> torch.Tensor:
        return F.normalize(
            encode_texts(model, texts, dataset.max_words, batch_size, device, precision), dim=-1
        )

    sim = image @ embed([dataset.description(j) for j in range(n)]).t()
    out: dict[str, Any] = {
        "R@1": 100 * float((sim.argmax(dim=1) == torch.arange(n)).float().mean()),
        "images": n,
        "chance": {"R@1": 100 / n, **{a: 100 * c for a, c in CHANCE.items()}},
    }
    rng = np.random.default_rng(seed)
    for attribute in ATTRIBUTES:
        questions, sizes = [], []  # per image: the true description first, then each other value
        for _, objects in dataset.items[:n]:
            k = int(rng.integers(len(objects)))
            true = objects[k].value(attribute)
            options = [true] + [v for v in VALUES[attribute] if v != true]
            questions += [
                describe(change_attribute(objects, k, attribute, v), dataset.width, dataset.height)
                for v in options
            ]
            sizes.append(len(options))
        per_image = torch.split(embed(questions), sizes)
        similarity = [q @ image[j] for j, q in enumerate(per_image)]
        right = sum(int(sim_j[0] > sim_j[1:].max()) for sim_j in similarity)
        out[attribute] = 100 * right / n
    out["attributes"] = float(np.mean([out[a] for a in ATTRIBUTES]))
    return out


__all__ = ["CHANCE", "description_accuracy"]
