#!/bin/bash
cd "$(dirname "$0")/../../.."  # the repository root
s=$(date +%s)
OMP_NUM_THREADS=1 nice -n 10 .venv/bin/fewtask-train analyze --checkpoint runs/omni-ana/maltml,runs/omni-ana/maml,runs/omni-ana/anil,runs/omni-ana/boil,runs/omni-ana/fo-maltml \
  --episodes runs/omni-ana/test.h5 --max-families 40 --steps 3 --out runs/omni-ana/analysis > runs/omni-ana/analyze.log 2>&1
echo "analyze rc=$? seconds=$(( $(date +%s) - s ))" >> runs/omni-ana/train-times.txt
