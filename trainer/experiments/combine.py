"""`fewtask-train combine`: one report from runs whose methods were trained apart.

Tuned methods have different settings (each its own `best.json`), so each is trained in its
own run folder; the paper's comparison still has to be paired on the same held-out units.
A run that saves its evaluation curves (`report.save_curves`: ``OUT/<method>/seed-<S>/curves.pt``
for `navigation` and `continual`, ``curves.pt`` beside `eval`'s eval.json; the units in the run's fixed
order) and records what fixes those units (``extra["evaluation"]``: crops, goals, seeds,
episodes file, ...) can be combined with others of the same experiment whose evaluation
settings are equal (checked; a mismatch is a one-line error naming the settings). This
module knows no command: a new experiment joins by saving both. The
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


@dataclass
class Entry:
    """One method's evaluation for one seed, found in a run folder."""

    experiment: str
    unit: str
    steps: list
    method: str
    seed: int
    curves: Path
    train: dict
    config: dict
    settings: dict


@dataclass
class CombineConfig(Config):
    """`fewtask-train combine`'s options."""

    runs: str = option(help="Run folders, comma-separated: `navigation` or `continual` runs (results.json and each "
                            "method's curves.pt) or `eval` folders (eval.json and curves.pt), one per method and seed.")  # fmt: skip
    out: str = option(help="Output folder of the joint results.json.")


def entries(folder: Path) -> list[Entry]:
    """The (method, seed) evaluations of a `navigation` run or an `eval` folder."""
    name = "eval.json" if (folder / "eval.json").is_file() else "results.json"
    if not (folder / name).is_file():
        raise FewtaskError(f"{folder} has neither eval.json nor results.json; pass finished run folders to --runs")
    run = json.loads((folder / name).read_text())
    config, extra = run["config"], run.get("extra", {})
    if "evaluation" not in extra:
        raise FewtaskError(f"{folder / name} records no evaluation settings (extra.evaluation): rerun it with this "
                           "version; `navigation` and `eval` runs record them")  # fmt: skip
    settings = extra["evaluation"]
    found = []
    for method, summary in run["methods"].items():
        for i, seed in enumerate(run["seeds"]):
            curves = folder if name == "eval.json" else folder / method / f"seed-{seed}"
            curves = curves / report.CURVES_FILE
            config_of = {"run": str(folder), **config, **({"algorithm": extra["algorithm"]} if "algorithm" in extra else {})}
            found.append(Entry(run["experiment"], run["unit"], run["steps"], method, int(seed), curves,
                               summary["train"][i] if i < len(summary["train"]) else {}, config_of, settings))  # fmt: skip
    return found


def combine(c: CombineConfig) -> dict:
    folders = [Path(p) for p in c.runs.split(",") if p]
    if len(folders) < 2:
        raise FewtaskError("--runs needs two or more run folders to combine")
    found = [e for f in folders for e in entries(f)]
    first = found[0]
    curves: dict[int, dict] = {}
    train: dict[str, list] = {}
    configs: dict[str, list] = {}
    for e in found:
        if e.experiment != first.experiment:
            raise FewtaskError(f"{e.config['run']} is a {e.experiment!r} run, {folders[0]} a {first.experiment!r} one; "
                               "combine runs of one kind")  # fmt: skip
        differ = sorted(k for k in {*e.settings, *first.settings} if e.settings.get(k) != first.settings.get(k))
        if differ:
            raise FewtaskError(f"{e.config['run']} scored other units than {folders[0]} ({', '.join(differ)} differ)")
        if e.method in curves.get(e.seed, {}):
            raise FewtaskError(f"method {e.method!r} seed {e.seed} is in two of the runs; combine each once")
        if not e.curves.is_file():
            raise FewtaskError(f"{e.curves} is missing: rerun that run with this version (it saves its curves)")
        curves.setdefault(e.seed, {})[e.method] = torch.load(e.curves, map_location="cpu")
        train.setdefault(e.method, []).append(e.train)
        configs.setdefault(e.method, []).append(e.config)
    seeds = sorted(curves)
    methods = list(train)
    lacking = [f"{m} seed {s}" for s in seeds for m in methods if m not in curves[s]]
    if lacking:
        raise FewtaskError(f"every method needs every seed for paired intervals; missing: {', '.join(lacking)}")
    out = io.ensure_writable(Path(c.out))
    config = {"runs": [str(f) for f in folders], "methods": configs}
    ordered = {s: {m: curves[s][m] for m in methods} for s in seeds}
    extra = {"evaluation": first.settings}
    results = report.results(first.experiment, config, first.unit, ordered, first.steps, train, None, extra)
    io.write_json(out / "results.json", results)
    typer.echo(as_meant_table(results))
    typer.echo(f"wrote {out / 'results.json'}")
    return results


def as_meant_table(results: dict) -> str:
    """Each method as meant (after its meta-update where it trains one) and the paired
    differences, per goal step (one column where the metric has no steps, as `continual`'s
    MSE after its online pass): mean ± 95% over seeds."""
    metrics = next(iter(results["methods"].values()))[report.WITHOUT]
    metric = "accuracy" if "accuracy" in metrics else next(iter(metrics))  # images: accuracy in %, not the loss
    scale = 100.0 if metric == "accuracy" else 1.0
    digits = 3 if metric == "mse" else 1  # continual MSEs are around 1; accuracies in %, returns in tens
    unit = " (%)" if metric == "accuracy" else ""
    steps = results["steps"]
    columns = range(len(steps)) if steps else [None]
    after = f" after 0..{len(steps) - 1} goal steps" if steps else ""
    lines = [f"{metric}{unit}{after} (mean ± 95% over seeds {results['seeds']})"]

    def row(summary: dict) -> str:
        return " / ".join(report.cell(summary, s, scale, digits) for s in columns)

    for m, r in results["methods"].items():
        for p in report.PROTOCOLS:
            if p in r:
                lines.append(f"  {m:>10} {p:>20}: " + row(r[p][metric]))
    for pair, table in results["comparisons"].items():
        for p, t in table.items():
            lines.append(f"  {pair:>22} {p:>20}: " + row(t[metric]))
    return "\n".join(lines)


combine_command = typer_command(CombineConfig, combine, """Combine runs of methods trained apart into one paired report.

    Each run folder (e.g. one `navigation --config best.json` per tuned method) must
    have scored the same held-out units with the same seeds; writes OUT/results.json
    with every pair compared under each protocol and as meant.""")
