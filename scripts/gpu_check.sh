#!/usr/bin/env bash
# GPU check of the vision trainer, one short run (about 8 minutes on one H100):
#   1. conv4 MAML / exact MALTML outer steps on CUDA, eager (vmap) and torch.compile,
#      and MAML with `higher` when it is installed     -> $OUT/bench_cuda.json
#   2. DDP through torchrun with the NCCL backend (world size 1) on real Omniglot
#                                                       -> $OUT/ddp_nccl.json
#   3. MAML 5-way 1-shot on real Omniglot (Vinyals split, 28x28, alpha 0.4, one inner
#      step, 32 tasks per step) for ~4 minutes, evaluated on 600 fixed test episodes
#      (Finn et al. 2017: 98.7 +- 0.4%)                 -> $OUT/omniglot_maml.json
#
# Usage, from the repository root:
#   OUT=/some/folder scripts/gpu_check.sh PATH/TO/omniglot   # folder with images_background.zip, images_evaluation.zip
# Environment: PY (python with the project's dependencies; default .venv/bin/python, else python3),
#              WORK (scratch folder, default /tmp/fewtask_gpu), TRAIN_MINUTES (default 4),
#              DEVICE (default cuda; cpu gives a dry run of the script), BENCH_STEPS (10), EVAL_EPISODES (600),
#              WORKERS (8, stream workers), BENCH_ONLY (benchmark rows, comma-separated).
set -uo pipefail
cd "$(dirname "$0")/.."
OMNIGLOT=${1:?usage: scripts/gpu_check.sh OMNIGLOT_DIR (with images_background.zip and images_evaluation.zip)}
OUT=${OUT:-runs/gpu_check}
WORK=${WORK:-/tmp/fewtask_gpu}
TRAIN_MINUTES=${TRAIN_MINUTES:-4}
DEVICE=${DEVICE:-cuda}
BENCH_STEPS=${BENCH_STEPS:-10}
EVAL_EPISODES=${EVAL_EPISODES:-600}
WORKERS=${WORKERS:-8}
BENCH_ONLY=${BENCH_ONLY:-"maml vmap,maml compiled,maml higher,maml loop,maltml-3 vmap,maltml-3 compiled,maltml-1 vmap,fo-maltml vmap"}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT" "$WORK"
t0=$(date +%s)
stamp() { echo "[gpu_check $(date +%H:%M:%S), +$(( $(date +%s) - t0 )) s] $*"; }

stamp "device"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/device.txt"

stamp "1. conv4 outer steps on CUDA: eager vmap, torch.compile, higher"
timeout 200 "$PY" scripts/bench_trainer_vision.py --device "$DEVICE" --steps "$BENCH_STEPS" --warmup 3 --timeout 90 \
  --only "$BENCH_ONLY" \
  --json "$OUT/bench_cuda.json" 2>&1 | tail -n 20

stamp "2. Omniglot Vinyals shards (once) + DDP with NCCL under torchrun (world size 1)"
DATA="$WORK/omniglot/omniglot-vinyals"
if [ ! -f "$DATA/manifest.json" ]; then
  timeout 240 "$PY" -c 'from fewtask_data.cli import main; main()' build omniglot-families --root "$OMNIGLOT" --split vinyals \
    --families-per-alphabet 0 --image-size 28 --out "$DATA" 2>&1 | tail -n 2
fi
rm -rf "$WORK/ddp"
timeout 120 "$PY" -m torch.distributed.run --nproc_per_node 1 -m trainer.cli fit --data "$DATA" --pool-families \
  --algo maml --ways 5 --shots 1 --queries 5 --val 5 --meta-tasks 7 --batch 4 --alpha 0.4 --steps 30 \
  --episodes-per-visit 100000 --device "$DEVICE" --out "$WORK/ddp" --no-progress --log-every 10 2>&1 | tail -n 3
"$PY" - "$WORK/ddp" "$OUT/ddp_nccl.json" <<'EOF'
import json, sys
from pathlib import Path
run, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").exists() else []
ok = bool(lines) and cfg.get("world_size") == 1
backend = "nccl" if cfg.get("device", "").startswith("cuda") else "gloo"
out.write_text(json.dumps({"ok": ok, "backend": backend if ok else None, "config_device": cfg.get("device"),
                           "steps": lines[-1]["step"] if lines else 0, "metrics": lines}, indent=1))
print("DDP", backend, "ok" if ok else "FAILED")
EOF

stamp "3. MAML 5-way 1-shot on Omniglot for ${TRAIN_MINUTES} min + 600 test episodes"
timeout $(( TRAIN_MINUTES * 60 + 150 )) "$PY" scripts/omniglot_maml.py --root "$OMNIGLOT" --work "$WORK/omniglot" \
  --device "$DEVICE" --max-minutes "$TRAIN_MINUTES" --eval-episodes "$EVAL_EPISODES" --workers "$WORKERS" --json "$OUT/omniglot_maml.json" 2>&1 | tail -n 30
cp "$WORK/omniglot/maml/metrics.jsonl" "$OUT/omniglot_maml_metrics.jsonl" 2>/dev/null
stamp "done; results in $OUT"
ls -l "$OUT"
