#!/usr/bin/env bash
# The paper's CLEVR-Change recipe: adaptation from OpenAI ViT-B/32, then captioning (configs/clevr_*.json).
# Needs the dataset at data/ (or pass data=DIR) and OpenAI's ViT-B-32.pt at weights/ (init= of the adaptation config).
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
clip4idc train --config configs/clevr_adapt.json "$@"
clip4idc train --config configs/clevr_finetune.json "$@"
