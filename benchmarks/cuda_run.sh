#!/usr/bin/env bash
# The GPU session in one prepared script: CUDA speed benchmarks (fp32 and bf16) and the CUDA correctness
# checks, each log written to $OUT (default ./cuda_out). Run from the repository root:
#     bash benchmarks/cuda_run.sh
# EXTRA_SITE may name a folder of extra packages to put on PYTHONPATH (a GPU image without ftfy, say).
set -u
OUT=${OUT:-cuda_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${EXTRA_SITE:+:$EXTRA_SITE}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee "$OUT/gpu.txt"
run() {  # name, timeout, command...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee "$OUT/$name.txt"
  timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc" | tee -a "$OUT/$name.txt"
  [ "$rc" = 0 ] || status=1
}
run caption_speed 180 "$py" benchmarks/caption_speed.py --device cuda --batches 1,64,256 --repeats 5
run train_speed 150 "$py" benchmarks/train_speed.py --device cuda --model ViT-B-32 --batch 64 --steps 10
run train_speed_demo 60 "$py" benchmarks/train_speed.py --device cuda --model demo --batch 256 --steps 10
run cuda_checks 200 "$py" benchmarks/cuda_checks.py
exit $status
