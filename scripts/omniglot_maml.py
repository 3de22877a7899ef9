"""MAML 5-way 1-shot on real Omniglot, the Finn et al. (2017) setting, end to end.

Vinyals split (1,028 train / 423 test characters, x4 rotations as classes), 28x28,
conv4 (64 filters, batch norm with task statistics), one inner step alpha = 0.4,
meta-batch 32 tasks, Adam 1e-3; tasks are drawn from all classes of a split
(`--pool-families`). Finn et al. report 98.7 +- 0.4% after 60,000 iterations.

    python scripts/omniglot_maml.py --root ../shared/data/omniglot --work runs/omniglot \
        [--device cuda] [--steps 60000] [--max-minutes 5] [--json results.json]

Steps: build the Vinyals shards (once) -> write fixed test episodes (once) ->
`fit` MAML -> `eval` accuracy after 0..10 finetuning steps with 95% intervals.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from itertools import islice
from pathlib import Path

import torch

from fewtask_data import BuildOptions, EpisodeShape, build_omniglot_families, write_episodes
from trainer.experiments.eval import evaluate_checkpoint
from trainer.experiments.fit import FitConfig, fit, open_stream

FINN_1SHOT = {"accuracy": 98.7, "ci95": 0.4}


def log(msg: str) -> None:
    print(f"[omniglot-maml {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder with images_background.zip and images_evaluation.zip")
    p.add_argument("--work", default="runs/omniglot", help="shards, episodes and the run go here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=60000, help="outer steps (Finn et al.: 60,000)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop training after this long (0: all steps)")
    p.add_argument("--families", type=int, default=4, help="episodes per step; tasks per step = families x (L + 1)")
    p.add_argument("--meta-tasks", type=int, default=7, help="L; 4 x (7 + 1) = 32 tasks per step")
    p.add_argument("--queries", type=int, default=5, help="query images per class while training")
    p.add_argument("--eval-episodes", type=int, default=600)
    p.add_argument("--eval-val", type=int, default=15, help="query images per class at test time")
    p.add_argument("--eval-steps", type=int, default=10)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers streaming tasks")
    p.add_argument("--build-workers", type=int, default=0, help="0 = all cores")
    p.add_argument("--impl", default="auto", help="training: auto (loop on CPU, vmap on GPU), vmap or loop")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="write the summary here too")
    args = p.parse_args()

    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    data = work / "omniglot-vinyals"
    if not (data / "manifest.json").exists():
        log(f"building Vinyals-split shards from {args.root}")
        t = time.perf_counter()
        build_omniglot_families(data, root=Path(args.root), split="vinyals", families_per_alphabet=0, image_size=28,
                                options=BuildOptions(workers=args.build_workers, seed=args.seed))  # fmt: skip
        log(f"built in {time.perf_counter() - t:.0f} s")
    cfg = FitConfig(
        data=str(data), out=str(work / "maml"), algo="maml", split="train", ways=5, shots=1, queries=args.queries,
        val=args.queries, meta_tasks=args.meta_tasks, goal_tasks=1, batch=args.families, steps=args.steps,
        model="conv4", hidden=64, bn="task", alpha=0.4, task_steps=1, order=2, lr=1e-3, seed=args.seed,
        episodes_per_visit=1_000_000, workers=args.workers, device=args.device, log_every=100,
        checkpoint_every=2000, resume=True, max_minutes=args.max_minutes, pool_families=True, tensorboard=False, impl=args.impl,
    )  # fmt: skip
    test = work / f"test_5way1shot_{args.eval_episodes}.h5"
    if not test.exists():
        log(f"writing {args.eval_episodes} fixed test episodes")
        # One meta task (only the "with meta-finetuning" numbers use it; HDF5 cannot store L = 0).
        shape = EpisodeShape(ways=5, shots=1, queries=5, val=args.eval_val, meta_tasks=1, goal_tasks=1)
        stream = open_stream(cfg, "test", shape, seed=20_000 + args.seed, per_visit=args.eval_episodes)
        write_episodes(test, islice(iter(stream), args.eval_episodes), {"split": "test", "pooled": True})
    log(f"training MAML ({args.steps} steps max, {args.max_minutes or 'no'} minute limit) on {args.device}")
    record = fit(cfg)
    log(f"trained {record['result']['step']} steps in {record['result']['seconds']:.0f} s; evaluating")
    t_eval = time.perf_counter()
    res = evaluate_checkpoint(work / "maml", test, steps=args.eval_steps, batch_size=50, device=args.device)  # impl: auto
    plain = res["methods"]["maml"]["without_meta_update"]["accuracy"]
    acc, ci = plain["mean"], plain["ci95"]
    summary = {
        "task": "Omniglot 5-way 1-shot, Vinyals split, 28x28, MAML (alpha 0.4, 1 inner step, 32 tasks/step)",
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
        "trained_steps": record["result"]["step"],
        "train_seconds": record["result"]["seconds"],
        "tasks_per_step": args.families * (args.meta_tasks + 1),
        "test_episodes": res["extra"]["episodes"],
        "accuracy_pct_by_finetune_steps": {s: round(100 * a, 2) for s, a in zip(res["steps"], acc)},
        "ci95_pct_by_finetune_steps": {s: round(100 * c, 2) for s, c in zip(res["steps"], ci)},
        "finn_et_al_2017": FINN_1SHOT,
        "eval_seconds": round(time.perf_counter() - t_eval, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "command": " ".join(sys.argv),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
