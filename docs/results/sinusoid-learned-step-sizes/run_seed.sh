#!/bin/bash
# one training seed of the issue-24 sinusoid rerun: MALTML, MAML, FO-MALTML, maml-oracle with learned step sizes
cd /work/main
for s in "$@"; do
  OMP_NUM_THREADS=1 .venv/bin/fewtask-train sinusoid --out /work/runs/sin-learned4/seed-$s --seed $s \
    --algorithms maltml,maml,fo-maltml,maml-oracle --learn-step-sizes --eval-families 500 --no-progress --resume
done
