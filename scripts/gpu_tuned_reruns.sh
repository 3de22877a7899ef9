#!/usr/bin/env bash
# scripts/tuned_reruns.sh on one GPU: the same commands and budgets with DEVICE=cuda, the
# search's trials on CUDA too (a copy of the preset with "device": "cuda"), more threads and
# longer trials (TUNE_STEPS 1000). Resumable like the CPU script: rerun it after a stop.
#
#   scripts/gpu_tuned_reruns.sh PATH/TO/omniglot
set -euo pipefail
cd "$(dirname "$0")/.."
OMNIGLOT=${1:?usage: scripts/gpu_tuned_reruns.sh OMNIGLOT_DIR}
WORK=${WORK:-runs/tuned-gpu}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$WORK"
WORK=$WORK PY=$PY DEVICE=cuda THREADS=${THREADS:-8} TUNE_STEPS=${TUNE_STEPS:-1000} \
  PRESET_OVERRIDES='{"device": "cuda", "workers": 4, "impl": "vmap"}' scripts/tuned_reruns.sh "$OMNIGLOT"
