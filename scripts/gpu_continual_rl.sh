#!/usr/bin/env bash
# Full-size continual-RL runs for a bigger machine (e.g. the 16-core GPU hosts): MuJoCo
# stepping is CPU work and the policies are small, so the cores, not the GPU, are what
# these runs use: one process per (method, seed), one torch thread each, into one output
# folder, then one --eval-only call pools them into results.json.
# Usage: scripts/gpu_continual_rl.sh [RUNS_DIR] [JOBS]   (defaults: runs/, 12 parallel jobs)
set -euo pipefail
RUNS=${1:-runs}
JOBS=${2:-12}
PY=${PY:-python}
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"
FAM="$RUNS/families-vel"
OUT="$RUNS/continual-rl-full"
$PY -m fewtask_data.cli build dynamics-families --out "$FAM" --train-families 40 --val-families 5 --test-families 10
COMMON=(--families "$FAM" --out "$OUT" --stream abrupt --iterations 300 --max-minutes 600 --trajectories 20
        --horizon 200 --tasks 5 --goal-tasks 2 --maml-tasks 20 --batch-families 4 --phases 10 --phase-steps 100000
        --sac-buffer 100000 --sac-learning-starts 5000 --eval-steps 3 --eval-trajectories 20 --reference-iterations 50)

# 1. MAML on HalfCheetah-Vel at g = -9.81, the published settings (500 iterations, 40 tasks x 20 trajectories), 3 seeds
for s in 0 1 2; do
  $PY scripts/maml_halfcheetah_vel.py --out "$RUNS/maml-cheetah-vel-full-s$s" --seed $s --iterations 500 --tasks 40 \
    --trajectories 20 --horizon 200 --eval-tasks 40 --eval-steps 3 --resume > "$RUNS/maml-cheetah-vel-s$s.log" 2>&1 &
done

# 2. the reference returns first (one process per seed; every method's process then reads them)
for s in 0 1 2; do $PY -m trainer.cli continual-rl "${COMMON[@]}" --seeds $s --methods oracle --resume > "$OUT-oracle-s$s.log" 2>&1 & done
wait

# 3. every (method, seed) in parallel, JOBS at a time; --resume continues a killed run exactly
# (maml-continual reuses maml's meta-training folder, whose lock allows one process: it runs after)
METHODS="maltml maml pg-finetune sac-fifo sac-reservoir sac-half sac-mtr sac-oracle"
for s in 0 1 2; do for m in $METHODS; do echo "$m $s"; done; done | xargs -P "$JOBS" -n 2 sh -c \
  "$PY -m trainer.cli continual-rl ${COMMON[*]} --seeds \$1 --methods \$0 --resume > $OUT-\$0-s\$1.log 2>&1"
for s in 0 1 2; do $PY -m trainer.cli continual-rl "${COMMON[@]}" --seeds $s --methods maml-continual --resume > "$OUT-mc-s$s.log" 2>&1 & done
wait

# 4. pool: every method and seed scored the same way, paired intervals over the 3 seeds
$PY -m trainer.cli continual-rl "${COMMON[@]}" --seeds 0,1,2 --methods maltml,maml,maml-continual,pg-finetune,oracle,sac-fifo,sac-reservoir,sac-half,sac-mtr,sac-oracle --eval-only

# 5. Kaplanis's direction check at a real scale: linear -7 -> -17 (and the sinusoid), gymnasium's running reward
$PY -m fewtask_data.cli build dynamics-families --out "$RUNS/families-run" --task-type run
for stream in drift sine; do
  $PY -m trainer.cli continual-rl --families "$RUNS/families-run" --out "$RUNS/continual-rl-sac-$stream" --stream $stream \
    --methods sac-fifo,sac-reservoir,sac-half,sac-mtr,sac-oracle --seeds 0,1,2 --phases 50 --phase-steps 20000 --sac-buffer 100000 \
    --horizon 999 --eval-steps 0 --reference-iterations 20 --resume > "$RUNS/sac-$stream.log" 2>&1 &
done
wait
