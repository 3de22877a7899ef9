#!/usr/bin/env bash
# The continual experiments at the paper's scale on one GPU (docs/continual.md):
#   1. scripts/bench_continual.py on CUDA: one OML meta-step (400 online steps, second
#      order), vmap over problems vs the plain autograd loop       -> $OUT/bench.json
#   2. fewtask-train continual-oml with the paper's settings (RLN 6 + PLN 2 x 300, 10
#      functions x 40 x 8, Adam 1e-4, inner 0.003): OML, the oracle, pretraining and
#      scratch, evaluated at each --curve point                     -> $OUT/oml/results.json
#   3. fewtask-train continual: MALTML vs OML across held-out frequency families
#                                                                   -> $OUT/families/results.json
# Usage, from the repository root:   OUT=/some/folder scripts/continual_gpu.sh
# Environment: PY (default .venv/bin/python, else python3), DEVICE (cuda; cpu = dry run),
#   CURVE (default 500,1000,2000,4000), PROBLEMS (problems per OML step, default 1 as the paper),
#   FAMILY_STEPS (default 2000), MAX_SECONDS (per method and stage, default 0 = no limit),
#   SKIP (comma-separated parts to skip: bench,oml,families).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/continual_gpu}
DEVICE=${DEVICE:-cuda}
CURVE=${CURVE:-500,1000,2000,4000}
PROBLEMS=${PROBLEMS:-1}
FAMILY_STEPS=${FAMILY_STEPS:-2000}
MAX_SECONDS=${MAX_SECONDS:-0}
SKIP=${SKIP:-}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
status=0
if [[ ",$SKIP," != *",bench,"* ]]; then
  $PY scripts/bench_continual.py --device "$DEVICE" --problems 1,4,16 --reps 3 | tail -1 > "$OUT/bench.json" || status=1
  cat "$OUT/bench.json"
fi
if [[ ",$SKIP," != *",oml,"* ]]; then
  $PY -m trainer.cli continual-oml --out "$OUT/oml" --device "$DEVICE" --curve "$CURVE" --problems "$PROBLEMS" \
      --max-seconds "$MAX_SECONDS" --no-progress || status=1
fi
if [[ ",$SKIP," != *",families,"* ]]; then
  $PY -m fewtask_data.cli build continual-sine-families --out "$OUT/families-def" || status=1
  $PY -m trainer.cli continual --families "$OUT/families-def" --out "$OUT/families" --device "$DEVICE" \
      --steps "$FAMILY_STEPS" --max-seconds "$MAX_SECONDS" --no-progress || status=1
fi
exit $status
