#!/bin/bash
# Five methods, 120 outer steps each (x 4 families), on the families built by prep.py.
cd "$(dirname "$0")/../../.."  # the repository root
for a in maltml maml anil boil fo-maltml; do
  s=$(date +%s)
  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/omniglot_families.py --root ../shared/data/omniglot \
    --work runs/omni-ana --data runs/omni-ana/data --steps 120 --algorithms $a --train-only \
    > runs/omni-ana/train-$a.log 2>&1
  echo "$a rc=$? seconds=$(( $(date +%s) - s ))" >> runs/omni-ana/train-times.txt
done
