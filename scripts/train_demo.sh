#!/usr/bin/env bash
# Reproduce the bundled demo model (clip4idc/weights/demo) and its model card's numbers, on a CPU.
# Stages: synthetic data → adaptation → finetuning → fp16 export → evaluation on a fresh test set.
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
source scripts/demo_data.sh
synth data/demo_train 16000 7 0.03 0.02      # 15,200 training scenes (data seed 7)
synth data/demo_train_b 24000 8 0.02 0       # a second set for stage 1k (data seed 8)
synth data/demo_test 1100 12345 0 0.92       # the fresh test set: 1,012 scenes
clip4idc train --config configs/demo_adapt.json "$@"        # stage 1a: 12 epochs from random weights
clip4idc train --config configs/demo_adapt_more.json "$@"   # stage 1b: 24 more epochs (fresh warm-up)
clip4idc train --config configs/demo_adapt_b256.json "$@"   # stage 1c: 12 more epochs at batch 256
clip4idc train --config configs/demo_adapt_twins.json "$@"  # stage 1d: 10 more with reversed add/drop twins
clip4idc train --config configs/demo_adapt_negatives.json "$@"  # stage 1e: 8 more, + counterfactual captions
clip4idc train --config configs/demo_adapt_unchanged.json "$@"  # stage 1f: 6 more, + each scene unchanged
clip4idc train --config configs/demo_adapt_unchanged_more.json "$@"  # stage 1g: 6 more of the same
clip4idc train --config configs/demo_adapt_unchanged_more2.json "$@"  # stage 1h: 6 more of the same
clip4idc train --config configs/demo_adapt_unchanged_more3.json "$@"  # stage 1i: 8 more of the same
clip4idc train --config configs/demo_adapt_fresh.json "$@"  # stage 1k: 3 more of the same on demo_train_b
clip4idc train --config configs/demo_finetune.json "$@"     # stage 2 (with attention guidance)
python -c "import clip4idc, torch; clip4idc.save_pretrained(clip4idc.load('runs/demo_finetune11/best'), 'clip4idc/weights/demo', dtype=torch.float16)"
clip4idc eval --checkpoint demo --data data/demo_test --split test --out runs/demo_eval12
