#!/usr/bin/env bash
# Issue 22 on the demo's embedded glyph families: the demo as shipped (its test episodes and
# untuned numbers), then each method tuned on the VALIDATION split (`fewtask-train tune
# image`, the same trials and steps per trial for every method), retrained with its
# best.json for each seed at the demo's 100 outer steps, scored on the demo's test episodes
# and paired across methods by `fewtask-train combine`. Every stage resumes: rerun the same
# command after a stop. About 1.5 h on one CPU core; METHODS splits it across two processes:
#
#   METHODS=maltml scripts/tuned_demo.sh & METHODS="maml pretrain" scripts/tuned_demo.sh; wait
#   scripts/tuned_demo.sh combine            # the joint report, once both halves are done
#
# Environment: WORK (runs/tuned-demo), TRIALS (per stage and method, 6), STEPS (outer steps
# per trial and per rerun, 100: the demo's), SEEDS (0 1 2), PY.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-runs/tuned-demo}
TRIALS=${TRIALS:-6}
STEPS=${STEPS:-100}
SEEDS=${SEEDS:-"0 1 2"}
METHODS=${METHODS:-"maltml maml pretrain"}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
TRAIN="$PY -m trainer.cli"
stamp() { echo "[tuned_demo $(date +%H:%M:%S)] $*"; }
BASE="$WORK/demo"  # the shipped demo: data, test.h5, untuned report

if [ "${1:-}" = "combine" ]; then
  runs=$(for m in maltml maml pretrain; do for s in $SEEDS; do printf '%s,' "$WORK/rerun/$m-seed$s"; done; done)
  $TRAIN combine --runs "${runs%,}" --out "$WORK/joint"
  exit 0
fi

mkdir -p "$WORK"
# the shipped demo once (its data and test episodes are every later stage's); a second
# process waits for it instead of building the same folder
if mkdir "$WORK/.demo-lock" 2>/dev/null; then
  [ -f "$BASE/report.md" ] || { stamp "the demo as shipped"; $TRAIN demo --out "$BASE" --no-progress; }
  touch "$WORK/.demo-done"
fi
while [ ! -f "$WORK/.demo-done" ]; do sleep 10; done

for m in $METHODS; do
  stamp "tuning $m on the validation split ($TRIALS trials per stage, $STEPS steps each)"
  $TRAIN tune image --data "$BASE/data" --method "$m" --trials "$TRIALS" --steps "$STEPS" --evals 2 \
      --out "$WORK/tune-$m"
  for s in $SEEDS; do
    run="$WORK/rerun/$m-seed$s"
    stamp "$m seed $s: $STEPS outer steps with its best.json, then the demo's test episodes"
    $TRAIN fit --config "$WORK/tune-$m/$m/best.json" --steps "$STEPS" --seed "$s" --out "$run" --resume --no-progress
    [ -f "$run/eval.json" ] || $TRAIN eval --checkpoint "$run" --episodes "$BASE/test.h5" --steps 3 --no-progress
  done
done
stamp "done: $METHODS (then: scripts/tuned_demo.sh combine)"
