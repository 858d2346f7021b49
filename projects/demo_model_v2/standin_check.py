"""Is the stand-in a real CLIP? Its zero-shot scores on the images of a synthetic split, against chance and
against the same architecture with random weights (:mod:`clip4idc.evaluation.descriptions`).

    python projects/demo_model_v2/standin_check.py [MODEL] [DATA] [SPLIT]    (default: clip-standin, data/demo_test_2208, test)
"""

from __future__ import annotations

import json
import sys

import torch

import clip4idc
from clip4idc.data.pretraining import DescriptionDataset
from clip4idc.data.readers import load_pairs
from clip4idc.evaluation.descriptions import description_accuracy


def main(argv: list[str]) -> None:
    source, data, split = (argv + ["clip-standin", "data/demo_test_2208", "test"][len(argv) :])[:3]
    model = clip4idc.load(source)
    images = DescriptionDataset(load_pairs(data, "clevr", split), resolution=model.config.resolution)
    torch.manual_seed(0)
    random = clip4idc.CLIP4IDC(model.config).eval()
    rows = {
        "stand-in": description_accuracy(model, images),
        "random weights": description_accuracy(random, images),
    }
    chance = rows["stand-in"].pop("chance")
    rows["random weights"].pop("chance")
    rows["chance"] = chance
    print(
        json.dumps({"model": source, "data": data, "split": split, "images": len(images), **rows}, indent=1)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
