#!/usr/bin/env bash
# The paper's pipeline on a CLIP stand-in, one command from nothing, on a CPU: synthetic scenes -> the CLIP
# stand-in (a single-image CLIP pretrained on the scenes' descriptions, exported in OpenAI's layout: the
# bundled clip4idc/weights/clip_standin) -> stage 1 from it, loaded as an OpenAI CLIP file is -> stage 2 ->
# fp16 export of the demo model candidate (runs/v2_demo until it replaces the bundled demo model) ->
# evaluation on a fresh test set -> the paper's ablation (stand-in -> stage 2 only) and a second stage-2
# seed of both arms (the spread).
# Each config in configs/ is a small delta on configs/base.json; journal.md says why each step is there.
# A finished step is skipped when the script runs again; an interrupted training run resumes bit-exactly.
#     bash projects/demo_model_v2/train.sh [key=value ...]      (overrides for every training run)
# Environment: WORK (where data/ and runs/ go; default: the repository), EXPORT (where the stand-in goes;
# default: clip4idc/weights), DEMO_EXPORT (the demo model candidate; default: runs/v2_demo), SCENES /
# TEST_SCENES (default 30000 / 1100), EVAL_ARGS (extra eval flags), SKIP_DOMAIN (set: no domain check),
# STANDIN (set: start stage 1 from this stand-in, e.g. the bundled clip4idc/weights/clip_standin, instead of
# pretraining one).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
EXPORT="${EXPORT:-$REPO/clip4idc/weights}"
mkdir -p "${WORK:-$REPO}" && cd "${WORK:-$REPO}"
DEMO_EXPORT="${DEMO_EXPORT:-runs/v2_demo}"
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
  [ -f "$2/metrics.json" ] || clip4idc eval --checkpoint "$1" --data data/demo_test_2208 --split test --out "$2" \
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
synth data/demo_test_2208 "${TEST_SCENES:-1100}" 2208 0 0.92     # the fresh test set (seed 2208): 1,012 scenes
if [ -z "${STANDIN:-}" ]; then
  train projects/demo_model_v2/configs/pretrain.json "$@"       # the CLIP stand-in, from random weights
  export_fp16 save_clip runs/v2_standin/best "$EXPORT/clip_standin"
  STANDIN="$EXPORT/clip_standin"
fi
[ -f runs/v2_standin_check.json ] || {  # a real CLIP? its zero-shot scores on the test images
  python "$REPO/projects/demo_model_v2/standin_check.py" "$STANDIN" data/demo_test_2208 test \
    > runs/v2_standin_check.tmp && mv runs/v2_standin_check.tmp runs/v2_standin_check.json; }
train projects/demo_model_v2/configs/adapt.json init="$STANDIN" "$@"   # stage 1 from the stand-in: plain epochs,
train projects/demo_model_v2/configs/adapt_hard.json "$@"              # then every hard negative
train projects/demo_model_v2/configs/finetune.json "$@"                             # stage 2
export_fp16 save_pretrained runs/v2_finetune/best "$DEMO_EXPORT"
[ -n "${SKIP_DOMAIN:-}" ] || [ -f runs/v2_domain_check.md ] || {  # what it knows: domain.safetensors
  python "$REPO/projects/demo_model/domain_check.py" --write --model "$DEMO_EXPORT" --data data/domain_check_v2 \
    > runs/v2_domain_check.tmp && mv runs/v2_domain_check.tmp runs/v2_domain_check.md; }
evaluate "$DEMO_EXPORT" runs/v2_eval
# The paper's ablation (stage 2 alone on the stand-in) and the spread (stage 2 of each arm with another seed).
train projects/demo_model_v2/configs/finetune.json out=runs/v2_ablation init="$STANDIN" "$@"
evaluate runs/v2_ablation runs/v2_eval_ablation
train projects/demo_model_v2/configs/finetune.json out=runs/v2_finetune_seed2 seed=2022 "$@"
evaluate runs/v2_finetune_seed2 runs/v2_eval_seed2
train projects/demo_model_v2/configs/finetune.json out=runs/v2_ablation_seed2 init="$STANDIN" \
  seed=2022 "$@"
evaluate runs/v2_ablation_seed2 runs/v2_eval_ablation_seed2
python "$REPO/projects/demo_model_v2/results.py" runs/v2_eval runs/v2_eval_seed2 -- runs/v2_eval_ablation \
  runs/v2_eval_ablation_seed2
log "recipe finished in $(( ($(date +%s) - START) / 60 )) min"
