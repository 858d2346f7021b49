#!/usr/bin/env bash
# The bundled models' recipe, one command from nothing, on a CPU: synthetic scenes -> the CLIP stand-in (a
# single-image CLIP pretrained on the scenes' descriptions, exported in OpenAI's layout) -> stage 1 from it,
# loaded as an OpenAI CLIP file is -> stage 2 -> fp16 export of the demo model -> evaluation on a fresh test
# set -> the paper's ablation (stand-in -> stage 2 only) and a second stage-2 seed of both arms (the spread).
# Each config in configs/ is a small delta on configs/base.json; journal.md says why each step is there.
# A finished step is skipped when the script runs again; an interrupted training run resumes bit-exactly.
#     bash projects/demo_model/train.sh [key=value ...]      (overrides for every training run)
# Environment: WORK (where data/ and runs/ go; default: the repository), EXPORT (where the weights go;
# default: clip4idc/weights), SCENES / TEST_SCENES (default 30000 / 1100), EVAL_ARGS (extra eval flags),
# SKIP_DOMAIN (set: leave the domain check's statistics as they are).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
EXPORT="${EXPORT:-$REPO/clip4idc/weights}"
mkdir -p "${WORK:-$REPO}" && cd "${WORK:-$REPO}"
source "$REPO/.venv/bin/activate"
START=$(date +%s)
log() { echo "[$(date -u +%H:%M:%S), $(( ($(date +%s) - START) / 60 )) min] $*"; }

synth() {  # DIR SCENES SEED VAL_FRAC TEST_FRAC: the generator's default look (160 x 120), each set made once
  [ -f "$1/splits.json" ] || clip4idc data synth "$1" --pairs "$2" --seed "$3" --val-frac "$4" --test-frac "$5" \
    --workers 2 --no-progress
  log "data $1 ready"
}
train() {  # CONFIG [key=value ...]: one training run; its folder's "done" marks it finished
  local out
  out=$(python -c "import sys; from clip4idc.training.config import TrainConfig as T
print(T.from_file(sys.argv[1], sys.argv[2:]).out)" "$REPO/$1" "${@:2}")
  if [ -f "$out/done" ]; then log "$out: already trained"; return; fi
  if [ -f "$out/checkpoint.pt" ]; then set -- "$@" --resume; fi
  clip4idc train --config "$REPO/$1" "${@:2}" progress=false
  touch "$out/done"
  log "trained $out"
}
evaluate() {  # CHECKPOINT OUT: test-set evaluation, once
  [ -f "$2/metrics.json" ] || clip4idc eval --checkpoint "$1" --data data/demo_test --split test --out "$2" \
    ${EVAL_ARGS:-} > /dev/null
  log "evaluated $1 -> $2/metrics.json"
}
export_fp16() {  # SAVE RUN DEST: SAVE is save_clip (OpenAI's layout) or save_pretrained
  python -c "import sys, torch, clip4idc
getattr(clip4idc, sys.argv[1])(clip4idc.load(sys.argv[2], config=sys.argv[4]), sys.argv[3], dtype=torch.float16)" \
    "$1" "$2" "$3" "${MODEL:-demo}"
  log "exported $2 -> $3"
}

synth data/demo_scenes "${SCENES:-30000}" 2207 0.02 0       # training scenes (seed 2207): 29,400 train, 600 val
synth data/demo_test "${TEST_SCENES:-1100}" 2208 0 0.92     # the fresh test set (seed 2208): 1,012 scenes
train projects/demo_model/configs/pretrain.json "$@"         # the CLIP stand-in, from random weights
export_fp16 save_clip runs/demo_standin/best "$EXPORT/clip_standin"
[ -f runs/standin_check.json ] || {  # a real CLIP? its zero-shot scores on the test images
  python "$REPO/projects/demo_model/standin_check.py" "$EXPORT/clip_standin" data/demo_test test \
    > runs/standin_check.tmp && mv runs/standin_check.tmp runs/standin_check.json; }
train projects/demo_model/configs/adapt.json init="$EXPORT/clip_standin" "$@"   # stage 1 from the stand-in
train projects/demo_model/configs/finetune.json "$@"                             # stage 2
export_fp16 save_pretrained runs/demo_finetune/best "$EXPORT/demo"
[ -n "${SKIP_DOMAIN:-}" ] || [ -f runs/domain_check.md ] || {  # what it knows: weights/demo/domain.safetensors
  python "$REPO/projects/demo_model/domain_check.py" --write --model "$EXPORT/demo" --data data/domain_check \
    > runs/domain_check.tmp && mv runs/domain_check.tmp runs/domain_check.md; }
evaluate "$EXPORT/demo" runs/demo_eval
# The paper's ablation (stage 2 alone on the stand-in) and the spread (stage 2 of each arm with another seed).
train projects/demo_model/configs/finetune.json out=runs/demo_ablation init="$EXPORT/clip_standin" "$@"
evaluate runs/demo_ablation runs/demo_eval_ablation
train projects/demo_model/configs/finetune.json out=runs/demo_finetune_seed2 seed=2022 "$@"
evaluate runs/demo_finetune_seed2 runs/demo_eval_seed2
train projects/demo_model/configs/finetune.json out=runs/demo_ablation_seed2 init="$EXPORT/clip_standin" \
  seed=2022 "$@"
evaluate runs/demo_ablation_seed2 runs/demo_eval_ablation_seed2
python "$REPO/projects/demo_model/results.py" runs/demo_eval runs/demo_eval_seed2 -- runs/demo_eval_ablation \
  runs/demo_eval_ablation_seed2
log "recipe finished in $(( ($(date +%s) - START) / 60 )) min"
