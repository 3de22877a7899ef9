#!/usr/bin/env bash
# Issue 22's tuned reruns on CPU: tune every method on VALIDATION families with the same
# budget (`fewtask-train tune`), then retrain each with its best.json for 3 seeds at the
# stated budgets and score it on the test families. Long (days on 2 cores); every stage
# resumes where it stopped (the studies in study.db, fit --resume, finished evals reused),
# so rerun the same command after an interruption.
#
#   scripts/tuned_reruns.sh PATH/TO/omniglot        # the folder with the two Omniglot zips
#
# Environment: PY (python; default .venv/bin/python), WORK (default runs/tuned), TRIALS (per
# stage and method, 8), TUNE_STEPS (outer steps per trial, 300), OMNIGLOT_STEPS (1000),
# NAV_ITERATIONS (100), CONTINUAL_STEPS (600), SEEDS (0 1 2), DEVICE (cpu), THREADS (1),
# METHODS (maltml fo-maltml maml pretrain), PRESET (the search's base fit options).
# Navigation and continual have no `tune` target yet (docs/tuning.md): they rerun with
# their documented settings at the stated budgets, and say so in their results.
set -euo pipefail
cd "$(dirname "$0")/.."
OMNIGLOT=${1:?usage: scripts/tuned_reruns.sh OMNIGLOT_DIR}
WORK=${WORK:-runs/tuned}
TRIALS=${TRIALS:-8}
TUNE_STEPS=${TUNE_STEPS:-300}
OMNIGLOT_STEPS=${OMNIGLOT_STEPS:-1000}
NAV_ITERATIONS=${NAV_ITERATIONS:-100}
CONTINUAL_STEPS=${CONTINUAL_STEPS:-600}
SEEDS=${SEEDS:-"0 1 2"}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-1}
METHODS=${METHODS:-"maltml fo-maltml maml pretrain"}
PRESET=${PRESET:-scripts/presets/omniglot-families.json}  # fit options every trial starts from
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=$THREADS PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
TRAIN="$PY -m trainer.cli"
stamp() { echo "[tuned_reruns $(date +%H:%M:%S)] $*"; }
mkdir -p "$WORK"

# 1. Omniglot families: data, fixed test episodes (600), then the search on val episodes.
DATA="$WORK/omniglot-families"
if [ ! -f "$DATA/test.h5" ]; then
  stamp "building Omniglot families and test episodes"
  $PY scripts/omniglot_families.py --root "$OMNIGLOT" --work "$DATA" --steps 0 --algorithms maml --threads "$THREADS"
fi
for m in $METHODS; do
  stamp "tuning $m on validation families ($TRIALS trials per stage, $TUNE_STEPS steps each)"
  $TRAIN tune image --data "$DATA/data" --config "$PRESET" --method "$m" \
      --trials "$TRIALS" --steps "$TUNE_STEPS" --val-episodes 200 --out "$WORK/tune-omniglot"
done

# 2. Tuned reruns: each method's best.json, OMNIGLOT_STEPS outer steps, 3 seeds, test episodes.
for m in $METHODS; do
  for s in $SEEDS; do
    run="$WORK/omniglot-rerun/$m-seed$s"
    stamp "training $m seed $s for $OMNIGLOT_STEPS steps"
    $TRAIN fit --config "$WORK/tune-omniglot/$m/best.json" --steps "$OMNIGLOT_STEPS" --seed "$s" --out "$run" \
        --device "$DEVICE" --resume --no-progress --checkpoint-every 100
    [ -f "$run/eval.json" ] || $TRAIN eval --checkpoint "$run" --episodes "$DATA/test.h5" --steps 10 --no-progress
  done
done

# 3. Navigation (100 iterations per method and seed) and continual (600 steps): untuned budgets.
stamp "navigation: $NAV_ITERATIONS iterations per method, seeds $SEEDS"
$TRAIN navigation --iterations "$NAV_ITERATIONS" --seeds "$(echo $SEEDS | tr ' ' ,)" --out "$WORK/navigation" --resume
stamp "continual: $CONTINUAL_STEPS steps per method"
[ -d "$WORK/continual-families" ] || $PY -m fewtask_data.cli build continual-sine-families --out "$WORK/continual-families"
$TRAIN continual --families "$WORK/continual-families" --steps "$CONTINUAL_STEPS" --out "$WORK/continual" --device "$DEVICE"
stamp "done: results.json / eval.json under $WORK (each records iterations or steps and training seconds)"
