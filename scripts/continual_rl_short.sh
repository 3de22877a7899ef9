#!/usr/bin/env bash
# The short (CPU, minutes) continual-RL runs whose numbers docs/continual-rl.md reports:
# one process at a time, one torch thread, nice, every run with an iteration budget and a
# time limit. Usage: scripts/continual_rl_short.sh [RUNS_DIR] (default runs/).
set -euo pipefail
RUNS=${1:-runs}
PY=${PY:-python}
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"

# 1. anchor: MAML on HalfCheetah-Vel at g = -9.81, truncated (published: 500 iterations, 40 x 20 trajectories)
nice $PY scripts/maml_halfcheetah_vel.py --out "$RUNS/continual-rl-maml-cheetah-vel" --iterations 500 --max-minutes 5 \
  --tasks 10 --trajectories 10 --horizon 200 --eval-tasks 20 --eval-steps 2 2>&1 | grep -v settotalmass | tee "$RUNS/maml-cheetah-vel.log"

# 2. anchor: SAC replay direction check on Kaplanis's linear -7 -> -17 schedule (gymnasium's running reward)
$PY -m fewtask_data.cli build dynamics-families --out "$RUNS/families-run" --task-type run
nice $PY -m trainer.cli continual-rl --families "$RUNS/families-run" --out "$RUNS/continual-rl-sac-drift" --stream drift \
  --methods sac-fifo,sac-reservoir,sac-mtr --seeds 0 --phases 5 --phase-steps 2000 --sac-buffer 4000 \
  --sac-learning-starts 1000 --sac-hidden 64 --sac-batch 128 --horizon 200 --trajectories 5 --reference-iterations 1 \
  --eval-trajectories 2 --eval-steps 0 2>&1 | grep -v settotalmass | tee "$RUNS/sac-drift.log"

# 3. MALTML vs baselines on held-out gravity families (velocity tasks), 3 seeds, tiny budget
$PY -m fewtask_data.cli build dynamics-families --out "$RUNS/families-vel"
nice $PY -m trainer.cli continual-rl --families "$RUNS/families-vel" --out "$RUNS/continual-rl-table" --stream abrupt \
  --methods maltml,maml,maml-continual,pg-finetune,oracle --seeds 0,1,2 --iterations 100 --max-minutes 0.75 \
  --trajectories 5 --horizon 100 --tasks 2 --goal-tasks 2 --maml-tasks 8 --batch-families 2 --phases 4 \
  --eval-steps 2 --eval-trajectories 5 --reference-iterations 2 2>&1 | grep -v settotalmass | tee "$RUNS/table.log"
