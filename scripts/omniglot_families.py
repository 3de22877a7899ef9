"""MALTML vs MAML vs FO-MALTML on held-out augmented Omniglot families (the paper's
question, issue 6 item 8): the `fewtask-train demo` pipeline on real Omniglot.

Alphabet-disjoint splits (30/10/10 alphabets), 4 augmentation-parameterized families
per alphabet (each fixes 1-3 dimensions of the handwritten space), 28x28; 5-way
1-shot, L = 5 meta tasks with 5 queries per class, 1 goal task with 5 validation
images per class; conv4 with batch norm on task statistics; alpha 0.4, beta 0.05,
gamma 0.4; every algorithm gets the same number of outer steps (4 families each).
Evaluation: 600 fixed test-split family episodes, accuracy after 0..10 finetuning
steps, with and without meta-finetuning on the family's 5 tasks, 95% intervals.

    python scripts/omniglot_families.py --root ../shared/data/omniglot --work runs/omniglot-families \\
        [--steps 400] [--hidden 32] [--algorithms maltml,maml,fo-maltml]

Stages reuse their outputs: run single algorithms in parallel processes (after one
run has built the data and episodes), then once with all of them for the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from trainer.commands.demo import DemoConfig, run_demo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder with images_background.zip and images_evaluation.zip")
    p.add_argument("--work", default="runs/omniglot-families")
    p.add_argument("--steps", type=int, default=400, help="outer steps per algorithm")
    p.add_argument("--hidden", type=int, default=32, help="conv4 filters")
    p.add_argument("--algorithms", default="maltml,maml,fo-maltml")
    p.add_argument("--eval-episodes", type=int, default=600)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers streaming families")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    algorithms = tuple(a.strip() for a in args.algorithms.split(",") if a.strip())
    cfg = DemoConfig(
        root=args.root, image_size=28, families_per_alphabet=4, ways=5, shots=1, queries=5, val=5, meta_tasks=5,
        goal_tasks=1, batch=4, steps=args.steps, hidden=args.hidden, alpha=0.4, beta=0.05, gamma=0.4,
        eval_episodes=args.eval_episodes, eval_goal_tasks=1, eval_steps=10, workers=args.workers,
        algorithms=algorithms, impl="auto",  # loops on CPU where the algorithm has them (faster at 28x28)
        log_every=max(1, args.steps // 20), checkpoint_every=max(1, args.steps // 4),
    )  # fmt: skip
    run_demo(Path(args.work), cfg)
    print((Path(args.work) / "report.md").read_text())


if __name__ == "__main__":
    main()
