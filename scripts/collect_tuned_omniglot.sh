#!/usr/bin/env bash
# Copy what `scripts/tuned_reruns.sh` (Omniglot stage) has to report from its run folder into
# the docs, finished or not, so that nothing reported lives only in a run folder:
#
#   scripts/collect_tuned_omniglot.sh runs/t23 docs/results/omniglot-tuned
#
# DEST/studies: every trial of every search (scripts/study_snapshot.py); DEST/tune/<m>: a
# finished search's tune.json, report.md, best.json and plots; DEST/tune/base: the base
# configs; DEST/rerun/<m>-seed<S>: eval.json, eval.png, config.json and the training metrics
# (metrics-partial.jsonl while a rerun is unfinished); DEST/joint: the combined report;
# DEST/logs: the scripts' logs. Checkpoints and curves stay in WORK. METHODS (default maltml
# fo-maltml maml pretrain) names the searches (other folders under tune-omniglot are left out).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: scripts/collect_tuned_omniglot.sh WORK DEST" >&2; exit 2; }
WORK=$1 DEST=$2
[ -d "$WORK/tune-omniglot" ] || { echo "error: no tune-omniglot folder in $WORK; give the WORK of scripts/tuned_reruns.sh" >&2; exit 2; }
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$DEST/studies" "$DEST/tune/base" "$DEST/rerun" "$DEST/logs"

searches=()
for m in ${METHODS:-maltml fo-maltml maml pretrain}; do
  [ -f "$WORK/tune-omniglot/$m/study.db" ] && searches+=("$WORK/tune-omniglot/$m")
done
[ ${#searches[@]} -eq 0 ] || $PY scripts/study_snapshot.py "${searches[@]}" --out "$DEST/studies"
cp "$WORK"/tune-omniglot/*-base.json "$DEST/tune/base/" 2>/dev/null || true

for folder in "${searches[@]}"; do
  [ -f "$folder/tune.json" ] || continue  # written when the search is done
  m=$(basename "$folder")
  mkdir -p "$DEST/tune/$m"
  cp "$folder/tune.json" "$DEST/tune/$m/"
  sed "s#($m/#(#g; s#\`$m/best.json\`#\`best.json\`#g" "$folder/report.md" > "$DEST/tune/$m/report.md"  # files sit flat here
  for f in "$folder"/*/best.json "$folder"/*/*.png; do [ -e "$f" ] && cp "$f" "$DEST/tune/$m/"; done
done

for run in "$WORK"/omniglot-rerun/*-seed*; do
  [ -d "$run" ] || continue
  out="$DEST/rerun/$(basename "$run")"
  mkdir -p "$out"
  for f in eval.json eval.png config.json; do [ -f "$run/$f" ] && cp "$run/$f" "$out/"; done
  metrics=metrics-partial.jsonl  # until the rerun is evaluated
  [ -f "$run/eval.json" ] && { rm -f "$out/$metrics"; metrics=metrics.jsonl; }
  [ -f "$run/metrics.jsonl" ] && cp "$run/metrics.jsonl" "$out/$metrics"
done
[ -d "$WORK/omniglot-rerun/joint" ] && { mkdir -p "$DEST/joint"; cp -r "$WORK/omniglot-rerun/joint/." "$DEST/joint/"; }
cp "$WORK"/*.log "$DEST/logs/" 2>/dev/null || true
echo "collected $WORK into $DEST: ${#searches[@]} searches, $(ls -d "$WORK"/omniglot-rerun/*-seed* 2>/dev/null | wc -l) reruns"
