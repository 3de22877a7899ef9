"""Why does a `fewtask-train sinusoid-maml` checkpoint miss Finn et al.'s 0.67/0.38/0.35?

Re-evaluates a finished run's MAML checkpoint on the same 600 held-out tasks and support
draws under a few changes, one at a time, so each suspected cause can be tested:

- ``as run``: float32, 5 shots (the benchmark itself, as `sinusoid-maml` reports it);
- ``float64``: the same, with model and data in float64 (float32 accumulation);
- ``10 shots``: 10 support points at evaluation, as during meta-training (5- vs 10-shot).

    python scripts/finn_diagnostics.py runs/sinusoid-maml/seed-0 [--draws 10] [--json out.json]

Prints, per variant, the mean MSE over draws after 1/5/10 steps, the median and the
number of diverging draws (MSE > 10 or not finite); ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fewtask_data import FewtaskError, io
from trainer.algorithms import make_algorithm
from trainer.domains.regression.sinusoid import finn_eval_tasks
from trainer.evaluation.draws import draw_summary, support_draw_curves
from trainer.experiments.sinusoid_maml import FINN_TABLE
from trainer.models import build_model, signature
from trainer.training import checkpoint as ckpt

VARIANTS = {"as run": (torch.float32, None), "float64": (torch.float64, None), "10 shots": (torch.float32, 10)}


def diagnose(run: Path, draws: int) -> dict:
    config = json.loads((run / "results.json").read_text())["config"]
    model = build_model("mlp")
    state = ckpt.load(run / "maml" / ckpt.CHECKPOINT_NAME, signature(model))
    model.load_state_dict(state["model"])
    out = {"run": str(run), "checkpoint_step": state["step"], "config": config, "variants": {}}
    for name, (dtype, shots) in VARIANTS.items():
        algo = make_algorithm("maml", model, alpha=config["alpha"], gamma=config["alpha"],
                              task_steps=config["inner_steps"], compile=False)  # fmt: skip
        params = {k: v.detach().to(dtype) for k, v in model.named_parameters()}
        sizes = {k: v.to(dtype) for k, v in state["step_sizes"].items()}
        tasks = finn_eval_tasks(config.get("eval_seed", config["seed"]), config["eval_tasks"],
                                shots or config["eval_shots"], config["eval_val"], dtype)  # fmt: skip
        mse = support_draw_curves(algo, params, sizes, tasks, max(FINN_TABLE), draws, config.get("eval_seed", 0))
        out["variants"][name] = draw_summary(mse)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a sinusoid-maml --out folder (results.json and maml/checkpoint.pt)")
    ap.add_argument("--draws", type=int, default=10, help="support draws per task (default 10)")
    ap.add_argument("--json", type=Path, default=None, help="also write the diagnostics here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        if args.draws < 1:
            raise FewtaskError(f"--draws must be >= 1, got {args.draws}")
        if not (args.run / "results.json").exists() or not (args.run / "maml" / ckpt.CHECKPOINT_NAME).exists():
            raise FewtaskError(f"{args.run} has no results.json and maml/checkpoint.pt; pass a finished "
                               "sinusoid-maml --out folder")  # fmt: skip
        report = diagnose(args.run, args.draws)
    except FewtaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.run} (step {report['checkpoint_step']}), {args.draws} support draws per task")
    for name, s in report["variants"].items():
        cells = [f"{k} steps {s['mse_vs_steps']['mean'][k]:.3f} (median {s['median_mse_vs_steps'][k]:.3f}, "
                 f"{s['diverging_draws'][k]} diverging)" for k in FINN_TABLE]  # fmt: skip
        print(f"  {name:>8}: " + "; ".join(cells))
    if args.json:
        io.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
