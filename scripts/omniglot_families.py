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

from trainer.experiments.demo import OMNIGLOT_BETA, OMNIGLOT_GAMMA, build_data, omniglot_families_config, run_demo, train_one


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder with images_background.zip and images_evaluation.zip")
    p.add_argument("--work", default="runs/omniglot-families")
    p.add_argument("--steps", type=int, default=400, help="outer steps per algorithm")
    p.add_argument("--hidden", type=int, default=32, help="conv4 filters")
    p.add_argument("--algorithms", default="maltml,maml,fo-maltml")
    p.add_argument("--beta", type=float, default=OMNIGLOT_BETA, help="meta step size of Eq. 2 (chosen on validation families)")
    p.add_argument("--gamma", type=float, default=OMNIGLOT_GAMMA, help="goal finetuning step size")
    p.add_argument("--meta-reduction", default="sum", choices=("sum", "mean"), help="Eq. 2 over the L task losses")
    p.add_argument("--eval-split", default="test", choices=("val", "test"), help="val: for choosing step sizes")
    p.add_argument("--data", default=None, help="reuse this built dataset (default: WORK/data)")
    p.add_argument("--learn-step-sizes", action="store_true", help="learn alpha, beta, gamma per parameter tensor (issue 24)")
    p.add_argument("--train-only", action="store_true", help="only train (parallel processes share one --data)")
    p.add_argument("--eval-episodes", type=int, default=600)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers streaming families")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    algorithms = tuple(a.strip() for a in args.algorithms.split(",") if a.strip())
    cfg = omniglot_families_config(
        args.root, args.steps, args.hidden, beta=args.beta, gamma=args.gamma, meta_reduction=args.meta_reduction,
        data=args.data, eval_split=args.eval_split, eval_episodes=args.eval_episodes, workers=args.workers,
        algorithms=algorithms, learn_step_sizes=args.learn_step_sizes,
    )  # fmt: skip
    if args.train_only:
        for algo in algorithms:
            train_one(algo, build_data(Path(args.work), cfg), Path(args.work), cfg)
        return
    run_demo(Path(args.work), cfg)
    print((Path(args.work) / "report.md").read_text())


if __name__ == "__main__":
    main()
