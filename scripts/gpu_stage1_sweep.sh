#!/usr/bin/env bash
# Stage-1 recipe search on a lent GPU: which stage 1 gets furthest in what a two-hour CPU recipe can spend
# on it (~12 hard-negative epochs, ~75 min of this project's 2-core CPU)? Several variants of
# configs/demo_sweep_hard.json train at once on one GPU (the demo model fills a small part of it), each
# from random weights on the CPU recipe's own data (data seed 7, made on the device), and each variant's
# metrics.jsonl (val R@1 per epoch) lands in $OUT. A GPU finds the candidate; the CPU run decides. Its one
# run (an H200, 2026-11-27, 400 s per variant) found none: no variant passed 1.3 % val R@1 in 9 epochs
# (the demo model card, "A recipe under two hours").
#     bash scripts/gpu_stage1_sweep.sh [seconds per variant]    (results in $OUT, default runs/sweep_out)
set -u
OUT=${OUT:-runs/sweep_out}
LIMIT=${1:-420}
WORK=${WORK:-/tmp/sweep}
PAIRS=${PAIRS:-16000} DEVICE=${DEVICE:-cuda}  # a dry run here: PAIRS=200 DEVICE=cpu EXTRA="epochs=1"
mkdir -p "$OUT" "$WORK/runs"
export PYTHONPATH="$PWD${EXTRA_SITE:+:$EXTRA_SITE}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
cli=("$py" -c "from clip4idc.cli import main; main()")  # no console script needed on the device
data="$WORK/demo_train"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
start=$(date +%s)
[ -f "$data/splits.json" ] || "${cli[@]}" data synth "$data" --pairs "$PAIRS" --size 160x120 --seed 7 --workers 16 \
  --val-frac 0.03 --test-frac 0.02 2>&1 | tail -1
# fill the image cache once, 16 processes, so the variants do not all decode the same PNGs
"$py" - "$data" <<'PY'
import sys
from multiprocessing import Pool
from pathlib import Path
from clip4idc.data.datasets import ImageCache
root = Path(sys.argv[1])
cache = ImageCache(128, root / ".cache128")
paths = sorted(p for d in ("images", "sc_images", "nsc_images") for p in (root / d).glob("*.png"))
with Pool(16) as pool:
    pool.map(cache.uint8, paths, chunksize=256)
print(f"cached {len(paths)} images")
PY
echo "data ready after $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
variant() {  # name, overrides...
  local name=$1; shift
  timeout "$LIMIT" "${cli[@]}" train --config configs/demo_sweep_hard.json \
    --out "$WORK/runs/$name" data="$data" cache_dir="$data/.cache128" device="$DEVICE" workers=2 threads=1 \
    progress=false ${EXTRA:-} "$@" > "$WORK/$name.log" 2>&1
  echo "== $name ($*): exit $?" >> "$WORK/$name.log"
}
variant A_b256_lr5e-4 lr=0.0005 &
variant B_b256_lr1e-3 lr=0.001 &
variant C_b256_lr2e-3 lr=0.002 &
variant D_b64_lr1e-3 lr=0.001 batch_size=64 &
wait
echo "variants done after $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
"$py" - "$WORK" <<'PY' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
for run in sorted((work / "runs").iterdir()):
    log = run / "metrics.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    r1 = " ".join(f"{r['val']['R@1']:.1f}" for r in rows if "val" in r)
    secs = sum(r["epoch_seconds"] for r in rows)
    print(f"{run.name}: {len(rows)} epochs, {secs:.0f} s; val R@1 per epoch: {r1}")
PY
tail -n 3 "$WORK"/*.log > "$OUT/logs_tail.txt"
tar czf "$OUT/metrics.tgz" -C "$WORK" $(cd "$WORK" && ls -d runs/*/metrics.jsonl runs/*/config.json 2>/dev/null)
