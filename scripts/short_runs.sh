#!/usr/bin/env bash
# Short runs of every experiment, for a before/after comparison of results.json numbers.
# usage: scripts/short_runs.sh REPO OUT   (REPO: a checkout to run, put first on PYTHONPATH)
# Used for the issue-20 before/after check: scripts/compare_results_schemas.py BEFORE AFTER.
set -euo pipefail
REPO=$1; OUT=$2; T=${FEWTASK_TRAIN:-fewtask-train}; D=${FEWTASK_DATA:-fewtask-data}
mkdir -p $OUT
cd $REPO; export PYTHONPATH=$REPO
export OMP_NUM_THREADS=1
$T sinusoid --out $OUT/sin --steps 150 --eval-families 20 --algorithms maltml,maml,pretrain,oracle,maml-oracle,fo-maltml --oracle-steps 30 --no-compile --no-progress --seeds 0,1 > $OUT/sin.log 2>&1
$T sinusoid-maml --out $OUT/sinmaml --steps 100 --eval-tasks 20 --support-draws 2 --no-compile --no-progress > $OUT/sinmaml.log 2>&1
$D build navigation-families --out $OUT/navfam > /dev/null
$T navigation --families $OUT/navfam --out $OUT/nav --iterations 2 --seeds 0 --trajectories 4 --horizon 20 --test-families 3 --tasks 2 --goal-tasks 1 --batch-families 2 --maml-tasks 3 --eval-steps 1 --eval-mean-action > $OUT/nav.log 2>&1
$T navigation-maml --out $OUT/navmaml --iterations 2 --seeds 0 --trajectories 4 --horizon 20 --tasks 3 --test-goals 4 --eval-steps 1 > $OUT/navmaml.log 2>&1
$D build continual-sine-families --out $OUT/csf > /dev/null
$T continual --families $OUT/csf --out $OUT/cont --steps 3 --methods maltml,oml --meta-problems 2 --goal-problems 1 --eval-problems 3 --val-problems 1 --width 16 --no-progress > $OUT/cont.log 2>&1 || $T continual --help > $OUT/cont.help
$T continual-oml --out $OUT/coml --curve 3 --pretrain-steps 3 --eval-problems 3 --val-problems 1 --width 16 --no-progress > $OUT/coml.log 2>&1 || true
$T demo --out $OUT/demo > $OUT/demo.log 2>&1
echo done
