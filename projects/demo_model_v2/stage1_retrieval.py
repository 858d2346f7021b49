"""Stage-1 checkpoints side by side: text→pair R@K on a set's change pairs, as ``clip4idc eval`` measures it.

``clip4idc eval`` also captions every pair, which a stage-1 checkpoint cannot do; this runs only its
retrieval part (:func:`clip4idc.evaluation.evaluate.change_pair_retrieval`), so several stage-1 runs can
be compared on the fresh test set in seconds each. The journal's stage-1 probes used it.

    python projects/demo_model_v2/stage1_retrieval.py data/demo_test_2208 test runs/a runs/b/best ...
"""

from __future__ import annotations

import json
import sys
import time

import torch

import clip4idc
from clip4idc.data import load_pairs
from clip4idc.evaluation.evaluate import change_pair_retrieval


def main(data: str, split: str, checkpoints: list[str]) -> None:
    pairs = load_pairs(data, "clevr", split)
    for checkpoint in checkpoints:
        t0 = time.time()
        model = clip4idc.load(checkpoint)
        cfg = model.config
        result, _ = change_pair_retrieval(
            model, pairs, cfg.max_words, 64, torch.device("cpu"), "fp32", 0, cfg.resolution
        )
        row = {"checkpoint": checkpoint, "pairs": result["num_pairs"], "texts": result["num_texts"]}
        print(
            json.dumps({**row, **result["text_to_pair"], "seconds": round(time.time() - t0, 1)}), flush=True
        )


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
