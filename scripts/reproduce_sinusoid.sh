#!/usr/bin/env bash
# Reproduce the sinusoid experiments: one process per method in parallel (each
# single-threaded), then one evaluation of all checkpoints together (results.json,
# fig2a/b/c), plus Finn et al.'s MAML benchmark. Usage:
#   scripts/reproduce_sinusoid.sh [OUT=runs/sinusoid]      (STEPS=70000 by default)
set -euo pipefail
OUT=${1:-runs/sinusoid}
STEPS=${STEPS:-70000}
PY=${PYTHON:-.venv/bin/python}
LIMIT=${LIMIT:-0}  # seconds per training process (0: none); a cut run is evaluated at its last checkpoint
mkdir -p "$OUT" "$OUT-maml"
run() { if [ "$LIMIT" -gt 0 ]; then timeout "$LIMIT" "$@"; else "$@"; fi; }
for m in maltml maml oracle pretrain; do
  run $PY -m trainer.commands.sinusoid sinusoid --algorithms $m --out "$OUT" --steps "$STEPS" --eval-families 2 \
    --no-progress > "$OUT/log-$m.txt" 2>&1 &
done
# maml-oracle trains on the held-out families themselves, so it needs the default evaluation settings.
run $PY -m trainer.commands.sinusoid sinusoid --algorithms maml-oracle --out "$OUT" --no-progress > "$OUT/log-maml-oracle.txt" 2>&1 &
run $PY -m trainer.commands.sinusoid sinusoid-maml --out "$OUT-maml" --steps "$STEPS" --no-progress > "$OUT-maml/log.txt" 2>&1 &
wait || true
$PY -m trainer.commands.sinusoid sinusoid --algorithms maltml,maml,oracle,pretrain,maml-oracle --out "$OUT" --eval-only --no-progress | tee "$OUT/summary.txt"
tail -n 4 "$OUT-maml/log.txt"
