#!/usr/bin/env bash
# Reproduce the bundled demo model (clip4idc/weights/demo) and its model card's numbers, on a CPU.
# Stages: synthetic data → adaptation → finetuning → fp16 export → evaluation on a fresh test set.
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
[ -f data/demo_train/splits.json ] || clip4idc data synth data/demo_train --pairs 16000 --size 160x120 --seed 7 \
  --workers 2 --val-frac 0.03 --test-frac 0.02
[ -f data/demo_train_b/splits.json ] || clip4idc data synth data/demo_train_b --pairs 24000 --size 160x120 --seed 8 \
  --workers 2 --val-frac 0.02 --test-frac 0
[ -f data/demo_test/splits.json ] || clip4idc data synth data/demo_test --pairs 1100 --size 160x120 --seed 12345 \
  --workers 2 --val-frac 0 --test-frac 0.92
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
python -c "import clip4idc, torch; clip4idc.load('runs/demo_finetune11/best').save_pretrained('clip4idc/weights/demo', dtype=torch.float16)"
clip4idc eval --checkpoint demo --data data/demo_test --split test --out runs/demo_eval12
