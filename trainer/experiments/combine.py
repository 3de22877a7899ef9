"""`fewtask-train combine`: one report from runs whose methods were trained apart.

Tuned methods have different settings (each its own `best.json`), so each is trained in its
own run folder; the paper's comparison still has to be paired on the same held-out units.
A run that saves its evaluation curves (``OUT/<method>/seed-<S>/curves.pt``, the units in
the run's fixed order) can be combined with others that scored the same units: same
experiment, seeds and evaluation settings (checked, a mismatch is a one-line error). The
joint results.json is the common schema (`evaluation.report`), with every pair of methods
compared under each protocol and as meant (a after its meta-update, b without one).

    fewtask-train combine --runs R/maltml,R/maml,R/pretrain --out R/joint
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import typer

from fewtask_data import FewtaskError, io
from trainer.evaluation import report
from trainer.experiments.options import Config, option, typer_command

CURVES = "curves.pt"
# Per command, the settings that fix which units are scored and how: equal in every run.
EVALUATION_KEYS = {
    "navigation": ("families", "test_families", "eval_seed", "eval_steps", "tasks", "goal_tasks", "horizon",
                   "trajectories", "eval_mean_action"),
}


def command_of(experiment: str) -> str:
    """The command whose results.json names ``experiment`` (imported here: the commands import this module)."""
    from trainer.experiments import navigation

    commands = {navigation.EXPERIMENT: "navigation"}
    if experiment not in commands:
        raise FewtaskError(f"combine does not take {experiment!r} runs; it takes: {', '.join(EVALUATION_KEYS)} runs")
    return commands[experiment]


def save_curves(folder: Path, curves: report.Curves) -> None:
    """One method's curves for one seed ({protocol: {metric: tensor}}), for `combine`."""
    torch.save({p: {m: v.detach().cpu() for m, v in c.items()} for p, c in curves.items()}, folder / CURVES)


@dataclass
class CombineConfig(Config):
    """`fewtask-train combine`'s options."""

    runs: str = option(help="Run folders, comma-separated, each with results.json and its methods' curves.pt.")
    out: str = option(help="Output folder of the joint results.json.")


def read_run(folder: Path) -> dict:
    path = folder / "results.json"
    if not path.is_file():
        raise FewtaskError(f"{folder} has no results.json; pass finished run folders to --runs")
    return json.loads(path.read_text())


def evaluation_settings(run: dict) -> dict:
    config, extra = run["config"], run.get("extra", {})
    return {k: extra.get(k, config.get(k)) for k in EVALUATION_KEYS[command_of(run["experiment"])]}


def combine(c: CombineConfig) -> dict:
    folders = [Path(p) for p in c.runs.split(",") if p]
    if len(folders) < 2:
        raise FewtaskError("--runs needs two or more run folders to combine")
    runs = [read_run(f) for f in folders]
    first, settings = runs[0], evaluation_settings(runs[0])
    curves: dict[int, dict] = {int(s): {} for s in first["seeds"]}
    train, configs = {}, {}
    for folder, run in zip(folders, runs):
        if run["experiment"] != first["experiment"] or run["seeds"] != first["seeds"]:
            raise FewtaskError(f"{folder}: a {run['experiment']} run with seeds {run['seeds']}, the first is a "
                               f"{first['experiment']} run with seeds {first['seeds']}; combine runs of one kind")  # fmt: skip
        differ = {k: v for k, v in evaluation_settings(run).items() if v != settings[k]}
        if differ:
            raise FewtaskError(f"{folder} scored other units than {folders[0]} ({', '.join(differ)} differ)")
        for method, summary in run["methods"].items():
            if method in train:
                raise FewtaskError(f"method {method!r} is in two of the runs; combine each method once")
            train[method], configs[method] = summary["train"], {"run": str(folder), **run["config"]}
            for seed in curves:
                path = folder / method / f"seed-{seed}" / CURVES
                if not path.is_file():
                    raise FewtaskError(f"{path} is missing: rerun that run with this version (it saves its curves)")
                curves[seed][method] = torch.load(path)
    out = io.ensure_writable(Path(c.out))
    config = {"runs": [str(f) for f in folders], "methods": configs}
    extra = {**first.get("extra", {}), "evaluation": settings}
    results = report.results(first["experiment"], config, first["unit"], curves, first["steps"], train, None, extra)
    io.write_json(out / "results.json", results)
    typer.echo(as_meant_table(results))
    typer.echo(f"wrote {out / 'results.json'}")
    return results


def as_meant_table(results: dict) -> str:
    """Each method as meant (after its meta-update where it trains one) and the paired
    differences, per goal step: mean ± 95% over seeds."""
    metric = next(iter(next(iter(results["methods"].values()))[report.WITHOUT]))
    lines = [f"{metric} after 0..{len(results['steps']) - 1} goal steps (mean ± 95% over seeds {results['seeds']})"]
    for m, r in results["methods"].items():
        for p in report.PROTOCOLS:
            if p in r:
                lines.append(f"  {m:>10} {p:>20}: " + " / ".join(report.cell(r[p][metric], s, digits=1)
                                                              for s in range(len(results["steps"]))))  # fmt: skip
    for pair, table in results["comparisons"].items():
        for p, t in table.items():
            lines.append(f"  {pair:>22} {p:>20}: " + " / ".join(report.cell(t[metric], s, digits=1)
                                                              for s in range(len(results["steps"]))))  # fmt: skip
    return "\n".join(lines)


combine_command = typer_command(CombineConfig, combine, """Combine runs of methods trained apart into one paired report.

    Each run folder (e.g. one `navigation --config best.json` per tuned method) must
    have scored the same held-out units with the same seeds; writes OUT/results.json
    with every pair compared under each protocol and as meant.""")
