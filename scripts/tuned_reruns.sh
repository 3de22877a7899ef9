#!/usr/bin/env bash
# Issue 22's tuned reruns on CPU: tune every method on VALIDATION families with the same
# budget (`fewtask-train tune`), then retrain each with its best.json for 3 seeds at the
# stated budgets and score it on the test families. Long (days on 2 cores); every stage
# resumes where it stopped (the studies in study.db, fit --resume, finished evals reused),
# so rerun the same command after an interruption.
#
#   scripts/tuned_reruns.sh PATH/TO/omniglot        # the folder with the two Omniglot zips
#   STAGES=navigation scripts/tuned_reruns.sh       # one part only
#
# Environment: PY (python; default .venv/bin/python), WORK (default runs/tuned), TRIALS (per
# stage and method, 8), TUNE_STEPS (outer steps per trial, 300), TUNE_EVALS (validation scores
# per trial, 4), VAL_EPISODES (200), OMNIGLOT_STEPS (1000), ALL_METHODS (the Omniglot methods
# combined into one paired report once each has its evals; default maltml fo-maltml maml pretrain),
# NAV_ITERATIONS (100), NAV_TUNE_STEPS (iterations per trial, 40), CONTINUAL_STEPS (600),
# CONTINUAL_TUNE_STEPS (100), SEEDS (0 1 2), DEVICE (cpu), THREADS (1), METHODS (maltml
# fo-maltml maml pretrain), PRESET (the search's base fit options), NAV_PRESET (navigation's:
# Adam as the outer step of every method, docs/tuning.md), PRESET_OVERRIDES (JSON merged into
# every Omniglot base config, e.g. the GPU script's device). FO-MALTML starts from its own
# preset (scripts/presets/fo-maltml-omniglot.json: Reptile's several steps per level). Each
# method's Omniglot search has its own folder, so methods can be tuned in parallel processes
# (METHODS=... per process). STAGES (default all) picks parts: omniglot, navigation, continual.
set -euo pipefail
cd "$(dirname "$0")/.."
OMNIGLOT=${1:-}  # needed by the omniglot stage only
WORK=${WORK:-runs/tuned}
TRIALS=${TRIALS:-8}
TUNE_STEPS=${TUNE_STEPS:-300}
TUNE_EVALS=${TUNE_EVALS:-4}
VAL_EPISODES=${VAL_EPISODES:-200}
PRESET_OVERRIDES=${PRESET_OVERRIDES:-"{}"}
OMNIGLOT_STEPS=${OMNIGLOT_STEPS:-1000}
NAV_ITERATIONS=${NAV_ITERATIONS:-100}
CONTINUAL_STEPS=${CONTINUAL_STEPS:-600}
NAV_TUNE_STEPS=${NAV_TUNE_STEPS:-40}
CONTINUAL_TUNE_STEPS=${CONTINUAL_TUNE_STEPS:-100}
NAV_PRESET=${NAV_PRESET:-scripts/presets/navigation-adam.json}
STAGES=${STAGES:-"omniglot navigation continual"}
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

wants() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }
SEEDS_CSV=$(echo $SEEDS | tr ' ' ,)

if wants omniglot; then
  [ -n "$OMNIGLOT" ] || { echo "usage: scripts/tuned_reruns.sh OMNIGLOT_DIR (or STAGES without omniglot)" >&2; exit 2; }
  # 1. Omniglot families: data, fixed test episodes (600), then the search on val episodes.
  DATA="$WORK/omniglot-families"
  if [ ! -f "$DATA/test.h5" ]; then
    stamp "building Omniglot families and test episodes"
    $PY scripts/omniglot_families.py --root "$OMNIGLOT" --work "$DATA" --steps 0 --algorithms maml --threads "$THREADS"
  fi
  for m in $METHODS; do
    base="$WORK/tune-omniglot/$m-base.json"
    preset=$PRESET
    [ "$m" = fo-maltml ] && preset=scripts/presets/fo-maltml-omniglot.json
    mkdir -p "$WORK/tune-omniglot"
    $PY -c 'import json, sys; json.dump({**json.load(open(sys.argv[1])), **json.loads(sys.argv[2])}, open(sys.argv[3], "w"), indent=1)' \
        "$preset" "$PRESET_OVERRIDES" "$base"
    stamp "tuning $m on validation families ($TRIALS trials per stage, $TUNE_STEPS steps each, base $preset)"
    $TRAIN tune image --data "$DATA/data" --config "$base" --method "$m" --trials "$TRIALS" --steps "$TUNE_STEPS" \
        --evals "$TUNE_EVALS" --val-episodes "$VAL_EPISODES" --out "$WORK/tune-omniglot/$m"
  done

  # 2. Tuned reruns: each method's best.json, OMNIGLOT_STEPS outer steps, 3 seeds, test episodes.
  for m in $METHODS; do
    for s in $SEEDS; do
      run="$WORK/omniglot-rerun/$m-seed$s"
      stamp "training $m seed $s for $OMNIGLOT_STEPS steps"
      $TRAIN fit --config "$WORK/tune-omniglot/$m/$m/best.json" --steps "$OMNIGLOT_STEPS" --seed "$s" --out "$run" \
          --device "$DEVICE" --resume --no-progress --checkpoint-every 100
      [ -f "$run/eval.json" ] || $TRAIN eval --checkpoint "$run" --episodes "$DATA/test.h5" --steps 10 --no-progress
    done
  done
  # 3. One paired report of every method and seed, by whichever process finishes the last eval.
  evals=()
  for m in ${ALL_METHODS:-maltml fo-maltml maml pretrain}; do
    for s in $SEEDS; do evals+=("$WORK/omniglot-rerun/$m-seed$s"); done
  done
  missing=$(for e in "${evals[@]}"; do [ -f "$e/eval.json" ] || echo "$e"; done)
  if [ -z "$missing" ]; then
    $TRAIN combine --runs "$(IFS=,; echo "${evals[*]}")" --out "$WORK/omniglot-rerun/joint"
  else
    stamp "not combining yet: no eval.json in $(echo $missing | tr '\n' ' ')"
  fi
fi

# 3. Navigation: tune each method on the val crops (same trials and iterations per trial),
#    then NAV_ITERATIONS iterations per method and seed with its best.json on the same crops,
#    and one paired report of the separately trained methods (`combine`).
if wants navigation; then
  NAV_METHODS=${NAV_METHODS:-"maltml fo-maltml maml pretrain"}
  stamp "tuning navigation methods on the val crops ($TRIALS trials per stage, $NAV_TUNE_STEPS iterations each)"
  $TRAIN tune navigation --config "$NAV_PRESET" --method "$(echo $NAV_METHODS | tr ' ' ,)" --trials "$TRIALS" \
      --steps "$NAV_TUNE_STEPS" --evals 4 --val-families 30 --out "$WORK/tune-navigation"
  runs=()
  for m in $NAV_METHODS; do
    stamp "navigation $m: $NAV_ITERATIONS iterations, seeds $SEEDS"
    $TRAIN navigation --config "$WORK/tune-navigation/$m/best.json" --families "$WORK/tune-navigation/families" \
        --iterations "$NAV_ITERATIONS" --seeds "$SEEDS_CSV" --out "$WORK/navigation/$m" --resume
    runs+=("$WORK/navigation/$m")
  done
  $TRAIN combine --runs "$(IFS=,; echo "${runs[*]}")" --out "$WORK/navigation/joint"
fi

# 4. Continual: tune MALTML and OML on validation frequency families, then CONTINUAL_STEPS
#    steps per method with its best.json (one seed per run: the command trains one), and one
#    paired report of both methods and every seed (`combine`).
if wants continual; then
  FAM="$WORK/continual-families"
  [ -d "$FAM" ] || $PY -m fewtask_data.cli build continual-sine-families --out "$FAM"
  stamp "tuning continual methods ($TRIALS trials per stage, $CONTINUAL_TUNE_STEPS steps each)"
  $TRAIN tune continual --families "$FAM" --method maltml,oml --trials "$TRIALS" --steps "$CONTINUAL_TUNE_STEPS" \
      --out "$WORK/tune-continual"
  runs=()
  for m in maltml oml; do
    for s in $SEEDS; do
      runs+=("$WORK/continual/$m-seed$s")
      [ -f "$WORK/continual/$m-seed$s/results.json" ] && continue
      stamp "continual $m seed $s: $CONTINUAL_STEPS steps"
      $TRAIN continual --config "$WORK/tune-continual/$m/best.json" --families "$FAM" --steps "$CONTINUAL_STEPS" \
          --seed "$s" --out "$WORK/continual/$m-seed$s" --device "$DEVICE" --resume
    done
  done
  $TRAIN combine --runs "$(IFS=,; echo "${runs[*]}")" --out "$WORK/continual/joint"
fi
stamp "done: results.json / eval.json under $WORK (each records iterations or steps and training seconds)"
