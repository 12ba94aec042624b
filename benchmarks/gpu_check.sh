#!/usr/bin/env bash
# What a GPU box runs in one go (under 5 minutes): the shared logs ingested and labelled in a
# throw-away home, then 5 members fine-tuned from the shipped baseline with CUDA and the same
# on the CPU, seconds per epoch of each and their ratio, and the CUDA-trained folder put
# through the integrity and parity gates (export and parity run on the CPU).
#   bash benchmarks/gpu_check.sh [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-4}
LOGS=${SHARED_LOGS:-../shared/data/setitec}
[ -f "$LOGS/labels.csv" ] || { echo "gpu_check: no labelled logs at $LOGS" >&2; exit 2; }
python - <<'PY'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
PY
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
appliance ingest "$LOGS" --home "$TMP/home" >/dev/null || true  # exit 3: some rejected
appliance labels import "$LOGS/labels.csv" --home "$TMP/home" --by gpu-check >/dev/null
appliance export-dataset "$TMP/snap" --home "$TMP/home" --rig gpu-check
python benchmarks/train.py --dataset "$TMP/snap" --device cuda --compare cpu \
  --epochs "$EPOCHS" --folds 5
