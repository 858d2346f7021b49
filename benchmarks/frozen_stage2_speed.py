"""Stage 2 with a frozen vision tower on real captions: notebook 3's run (the lessons' full plan), its pairs
encoded every step against encoded once before training, interleaved, with the same validation scores.

    python benchmarks/frozen_stage2_speed.py [--rounds 2]

Trains in the lessons' work folder (``notebooks/_work/full``, made by notebook 2 or here), into ``ratio/``
beside the lessons' own runs. Prints each run's time, epoch times and val CIDEr, then the ratio of the
medians. ``train_speed.py --frozen`` measures one step on random captions instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))

import lessons  # noqa: E402

import clip4idc.training.train as training  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    os.chdir(NOTEBOOKS)  # the lessons' runs record relative paths: reuse notebook 2's, as notebook 3 does
    plan = lessons.lesson_plan(False)
    work = lessons.work_dir("_work", plan)
    lessons.plan_dataset(plan, work)
    adapted = lessons.train_or_reuse(lessons.adapt_config(plan, work))
    limit, seconds = training.FROZEN_TOKENS_LIMIT, {"every step": [], "once": []}
    for _ in range(args.rounds):
        for mode, seen in seconds.items():
            training.FROZEN_TOKENS_LIMIT = 0 if mode == "every step" else limit  # 0: nothing fits
            cfg = lessons.finetune_config(plan, work, init=adapted)
            cfg = dataclasses.replace(cfg, out=str(work / "ratio"))
            t = time.time()
            records = list(lessons.train_epochs(cfg))
            seen.append(time.time() - t)
            print(
                f"encoded {mode:10s}: {seen[-1]:6.1f} s; epochs {[r['epoch_seconds'] for r in records]} s; "
                f"val CIDEr {[round(r['val']['CIDEr'], 3) for r in records]}",
                flush=True,
            )
    training.FROZEN_TOKENS_LIMIT = limit
    each, once = (statistics.median(v) for v in seconds.values())
    print(f"whole run: every step {each:.1f} s, once {once:.1f} s: {each / once:.2f}x")


if __name__ == "__main__":
    main()
