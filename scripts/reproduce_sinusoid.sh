#!/usr/bin/env bash
# Reproduce the sinusoid experiments over training seeds. Usage:
#   scripts/reproduce_sinusoid.sh [OUT=runs/sinusoid]     (STEPS=70000 SEEDS=0,1,2 FINN_SEEDS="0 1 2 3")
# 1. Paper section 4.1: every method once per training seed, one training at a time (so the
#    recorded training times are not inflated by contention), all evaluated on the same 500
#    held-out families (eval seed 0); OUT/results.json has each seed and the mean over seeds.
# 2. Finn et al.'s MAML benchmark, one run per seed, each evaluated over 10 support draws per
#    task, then scripts/finn_diagnostics.py (float64, 10 shots) on each checkpoint.
set -euo pipefail
OUT=${1:-runs/sinusoid}
STEPS=${STEPS:-70000}
SEEDS=${SEEDS:-0,1,2}
FINN_SEEDS=${FINN_SEEDS:-0 1 2 3}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT" "$OUT-maml"
$PY -m trainer.cli sinusoid --seeds "$SEEDS" --out "$OUT" --steps "$STEPS" --resume --no-progress \
  2>&1 | tee "$OUT/log.txt"
for s in $FINN_SEEDS; do
  $PY -m trainer.cli sinusoid-maml --seed "$s" --out "$OUT-maml/seed-$s" --steps "$STEPS" --resume \
    --no-progress 2>&1 | tee "$OUT-maml/seed-$s.log"
  $PY scripts/finn_diagnostics.py "$OUT-maml/seed-$s" --json "$OUT-maml/seed-$s/diagnostics.json"
done
