#!/usr/bin/env bash
# The bundled demo model's recipe (clip4idc/weights/demo), on a CPU: synthetic data -> stage 1 (adapt, ten
# steps, each from the last one's best) -> stage 2 (finetune) -> fp16 export -> evaluation on a fresh test
# set. Each config in configs/ is a small delta on configs/base.json; journal.md says why each step is there.
#     bash projects/demo_model/train.sh [key=value ...]     (run from anywhere; writes data/ and runs/)
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
synth() {  # DIR PAIRS SEED VAL_FRAC TEST_FRAC: 160 x 120 scenes, each set made once
  [ -f "$1/splits.json" ] || clip4idc data synth "$1" --pairs "$2" --size 160x120 --seed "$3" --workers 2 \
    --val-frac "$4" --test-frac "$5"
}
synth data/demo_train 16000 7 0.03 0.02      # 15,200 training scenes (data seed 7)
synth data/demo_train_b 24000 8 0.02 0       # a second set for stage 1k (data seed 8)
synth data/demo_test 1100 12345 0 0.92       # the fresh test set: 1,012 scenes
clip4idc train --config projects/demo_model/configs/adapt_1a.json "$@"   # 12 epochs from random weights
clip4idc train --config projects/demo_model/configs/adapt_1b.json "$@"   # 24 more (fresh warm-up)
clip4idc train --config projects/demo_model/configs/adapt_1c.json "$@"   # 12 more at batch 256
clip4idc train --config projects/demo_model/configs/adapt_1d.json "$@"   # 10 more with reversed add/drop twins
clip4idc train --config projects/demo_model/configs/adapt_1e.json "$@"   # 8 more, + counterfactual captions
clip4idc train --config projects/demo_model/configs/adapt_1f.json "$@"   # 6 more, + each scene unchanged
clip4idc train --config projects/demo_model/configs/adapt_1g.json "$@"   # 6 more of the same
clip4idc train --config projects/demo_model/configs/adapt_1h.json "$@"   # 6 more of the same
clip4idc train --config projects/demo_model/configs/adapt_1i.json "$@"   # 8 more of the same
clip4idc train --config projects/demo_model/configs/adapt_1k.json "$@"   # 3 more of the same on demo_train_b
clip4idc train --config projects/demo_model/configs/finetune.json "$@"   # stage 2 (with attention guidance)
python -c "import clip4idc, torch; clip4idc.save_pretrained(clip4idc.load('runs/demo_finetune11/best'), 'clip4idc/weights/demo', dtype=torch.float16)"
clip4idc eval --checkpoint demo --data data/demo_test --split test --out runs/demo_eval12
