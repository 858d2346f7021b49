"""Can the lessons start from a CLIP stand-in? Stage 1 or stage 2 at the lessons' scale, measured each epoch.

The lessons (``notebooks/``) train on 1,125 synthetic pairs in CPU minutes. Starting them from the stand-in,
as the paper starts from OpenAI's CLIP, needs stage 1 to raise test R@1 visibly and stage 2 to write
pair-specific captions at that scale. This probe trains one run of either stage with the lessons' own
config (``notebooks/lessons.py``), from a stand-in (default: the bundled one), and prints after every epoch:
stage 1 - text→pair R@K on the lessons' test change pairs (epoch 0 = the start); stage 2 - val scores and
greedy captions of five val change pairs. The journal's "Lesson-scale stage 1 and stage 2 from the
stand-in" ran it.

    python projects/demo_model_v2/lesson_scale.py adapt OUT [key=value ...]      e.g. lr=1e-3 coef_lr=0.01
    python projects/demo_model_v2/lesson_scale.py finetune OUT [key=value ...]   e.g. coef_lr_shared=1.0

Values are JSON (``init="runs/x/best"`` as ``init=\\"runs/x/best\\"`` in a shell). The lessons' data is
``notebooks/_work/full/synth`` (generated if missing); ``OUT.json`` gets the curve.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "notebooks"))

import lessons  # noqa: E402

import clip4idc  # noqa: E402
from clip4idc.data import AdaptationDataset, load_pairs  # noqa: E402
from clip4idc.evaluation.retrieval import retrieval_metrics  # noqa: E402
from clip4idc.network import inference  # noqa: E402
from clip4idc.network.model import CLIP4IDC  # noqa: E402
from clip4idc.training.train import init_model  # noqa: E402


def retrieval_probe(plan: lessons.LessonPlan, data: Path) -> Callable[[CLIP4IDC], dict]:
    """Text→pair R@K on the lessons' test change pairs (every reference caption a query)."""
    config = clip4idc.get_config(plan.model, max_words=plan.max_words)
    pairs = load_pairs(data, "clevr", "test")
    test = AdaptationDataset(pairs, train=False, resolution=config.resolution, max_words=plan.max_words)
    captions = [p.captions for p in test.pairs]

    def measure(model: CLIP4IDC) -> dict:
        scores = inference.retrieval_similarity(model, test, captions, plan.max_words)
        return retrieval_metrics(*scores)["text_to_pair"]

    return measure


def caption_probe(data: Path) -> Callable[[CLIP4IDC], dict]:
    """Greedy captions of the first five val change pairs."""
    val = [p for p in load_pairs(data, "clevr", "val") if p.change_type != "no_change"][:5]

    def measure(model: CLIP4IDC) -> dict:
        return {"samples": model.caption([str(p.before) for p in val], [str(p.after) for p in val])}

    return measure


def main(stage: str, out: str, overrides: list[str]) -> None:
    plan = lessons.lesson_plan(False)
    data = lessons.plan_dataset(plan, REPO / "notebooks" / "_work" / "full")
    options: dict = {"init": "clip-standin", "model": "demo"}
    if stage == "adapt":  # the stand-in is not adapted yet: every part at lr unless overridden
        options.update(coef_lr=1.0, coef_lr_shared=None)
    for item in overrides:
        key, _, value = item.partition("=")
        options[key] = json.loads(value)
    cfg = lessons.train_config(plan, stage, data, out, **options)
    measure = retrieval_probe(plan, data) if stage == "adapt" else caption_probe(data)
    curve: list[dict] = []
    if stage == "adapt":  # epoch 0: the start, pair parts fresh
        curve.append({"epoch": 0, **measure(init_model(dataclasses.replace(cfg, epochs=1)).eval())})
        print(curve[-1], flush=True)
    t0 = time.time()
    for record in lessons.train_epochs(cfg):
        row = {"epoch": record["epoch"], "loss": record["train_loss"], "val": record["val"]}
        curve.append(
            {**row, **measure(clip4idc.load(Path(out) / "last")), "seconds": round(time.time() - t0)}
        )
        print(curve[-1], flush=True)
    Path(f"{out}.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "curve": curve}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("adapt", "finetune"):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
