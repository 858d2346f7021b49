"""Stage-1 checkpoints side by side: text→pair R@K on a set's change pairs, as ``clip4idc eval`` measures it.

``clip4idc eval`` also captions every pair, which a stage-1 checkpoint cannot do; this runs only its
retrieval part (every reference caption a query against the split's change pairs), so several stage-1
runs can be compared on the fresh test set in a minute each. The journal's stage-1 probes used it.

    python projects/demo_model_v2/stage1_retrieval.py data/demo_test_2208 test runs/a runs/b/best ...
"""

from __future__ import annotations

import json
import sys
import time

import clip4idc
from clip4idc.data import AdaptationDataset, load_pairs
from clip4idc.evaluation.retrieval import retrieval_metrics
from clip4idc.network import inference


def main(data: str, split: str, checkpoints: list[str]) -> None:
    pairs = load_pairs(data, "clevr", split)
    for checkpoint in checkpoints:
        t0 = time.time()
        model = clip4idc.load(checkpoint)
        words = model.config.max_words
        ds = AdaptationDataset(pairs, train=False, resolution=model.config.resolution, max_words=words)
        sim, text_to_pair = inference.retrieval_similarity(model, ds, [p.captions for p in ds.pairs], words)
        t2p = retrieval_metrics(sim, text_to_pair)["text_to_pair"]
        row = {"checkpoint": checkpoint, "pairs": len(ds.pairs), "texts": len(text_to_pair), **t2p}
        print(json.dumps({**row, "seconds": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
