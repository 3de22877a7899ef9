"""`fewtask-train demo` (what `make demo` runs): the main job end to end, no download.

1. build augmented families of the embedded SYNTHETIC glyphs into shards,
2. write fixed held-out (test split) family episodes to HDF5,
3. meta-train MALTML and MAML on the same streamed training families,
4. evaluate both on the fixed episodes (accuracy vs finetuning steps, 95% CI,
   with and without meta-finetuning),
5. write OUT/report.md with the numbers, the paired MALTML - MAML differences on the
   same episodes, and OUT/accuracy.png.

Sized to finish within 5 minutes on 2 idle CPU cores (16x16 glyphs, 100 outer steps,
200 test episodes scored after 0..3 steps, 1 torch thread); progress bars (stderr)
cover every long stage; every stage reuses its output when rerun (the build resumes, finished runs are not retrained). With
``DemoConfig.root`` the same pipeline runs on real Omniglot
(`scripts/omniglot_families.py`, the paper's augmented-family question).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from itertools import islice
from pathlib import Path

import torch
import typer
from tqdm import tqdm

from fewtask_data import (
    BuildOptions, EpisodeShape, EpisodeStore, FamilyStream, FewtaskError, build_omniglot_families, io, write_episodes,
)  # fmt: skip
from trainer.evaluation import plots, report
from trainer.experiments.eval import evaluate_checkpoint
from trainer.experiments.fit import FitConfig, TrainSettings, fit


# Step sizes of Eq. 2 (summed over the L tasks) chosen on VALIDATION families with
# scripts/step_size_sweep.py; the sweeps and the reasons are in docs/results/.
DEMO_BETA = 0.005  # docs/results/demo-step-sizes: best of 0.005 / 0.017 / 0.05 on validation families
OMNIGLOT_BETA, OMNIGLOT_GAMMA = 0.002, 0.4
EXPERIMENT = "MALTML vs MAML on held-out augmented glyph families (the demo)"  # docs/results/omniglot-step-sizes: best of 0.002 / 0.01 / 0.05 on validation families


@dataclass(kw_only=True)
class DemoConfig(TrainSettings):
    """The demo's data and evaluation, and `fit`'s settings (TrainSettings) where the demo
    differs from fit's defaults."""

    root: str | None = None  # real Omniglot (folder with the two zips); None: the embedded synthetic glyphs
    data: str | None = None  # a built dataset shared by several runs (a sweep), episodes beside it; None: OUT/data
    image_size: int = 16  # 16x16 glyphs: the demo within 5 minutes (issue 11)
    glyph_alphabets: int | None = None  # None: all scripts
    glyph_characters: int = 20
    glyph_drawers: int = 20
    families_per_alphabet: int = 4
    eval_episodes: int = 200  # intervals of about +/-1.5 points: the demo's differences are 3-12 points
    eval_goal_tasks: int = 1  # goal tasks per held-out episode (evaluation cost grows with it)
    eval_steps: int = 3
    eval_split: str = "test"  # "val" scores held-out validation families (for choosing step sizes)
    eval_impl: str = "vmap"  # 16x16: vmap evaluates 1.75x faster than the loop on one CPU thread (see `fewtask-train eval --impl`)
    eval_batch: int = 16  # episodes evaluated together
    algorithms: tuple[str, ...] = ("maltml", "maml")
    # fit's settings the demo changes (the others are fit's defaults: alpha 0.4 = MAML's Omniglot
    # value, gamma 0.4, 5-way 1-shot, V = 5, 4 families per step, Adam 1e-3):
    beta: float = DEMO_BETA
    queries: int = 3
    meta_tasks: int = 3
    goal_tasks: int = 2
    steps: int = 100  # with 16x16 and 200 test episodes: within 5 minutes (issue 11)
    hidden: int = 32
    impl: str = "vmap"  # 16x16 on one CPU thread: vmap trains MALTML 1.65x, MAML 1.5x faster than the loop
    workers: int = 1
    log_every: int = 10
    checkpoint_every: int = 50
    resume: bool = True  # every stage reuses its output
    tensorboard: bool = False
    max_minutes: float = 0.0  # per algorithm; 0 = all steps

    def shape(self, goal_tasks: int | None = None) -> EpisodeShape:
        goals = self.goal_tasks if goal_tasks is None else goal_tasks
        return EpisodeShape(self.ways, self.shots, self.queries, self.val, self.meta_tasks, goals)


def omniglot_families_config(root: str, steps: int = 400, hidden: int = 32, **changes) -> DemoConfig:
    """`scripts/omniglot_families.py`'s setting on real Omniglot: 28x28, 4 families per alphabet,
    5-way 1-shot, L = 5 meta tasks (Q = 5), 1 goal task (V = 5), 600 test episodes scored
    after 0..10 steps; beta and gamma as chosen on validation families (docs/results/omniglot-families)."""
    base = dict(
        root=root, image_size=28, families_per_alphabet=4, ways=5, shots=1, queries=5, val=5, meta_tasks=5, goal_tasks=1,
        batch=4, steps=steps, hidden=hidden, alpha=0.4, beta=OMNIGLOT_BETA, gamma=OMNIGLOT_GAMMA, eval_episodes=600,
        eval_goal_tasks=1, eval_steps=10, impl="auto", eval_impl="auto",  # loops on CPU (faster at 28x28)
        log_every=max(1, steps // 20), checkpoint_every=max(1, steps // 4),
    )  # fmt: skip
    return DemoConfig(**{**base, **changes})


def _log(message: str) -> None:
    typer.echo(f"[demo {time.strftime('%H:%M:%S')}] {message}")


def build_data(out: Path, cfg: DemoConfig) -> Path:
    data = Path(cfg.data) if cfg.data else out / "data"
    if (data / "manifest.json").exists():
        _log(f"reusing the built families in {data}")
        return data
    _log(f"building {'Omniglot' if cfg.root else 'SYNTHETIC glyph'} families into shards")
    report = build_omniglot_families(
        data,
        root=Path(cfg.root) if cfg.root else None,
        families_per_alphabet=cfg.families_per_alphabet,
        image_size=cfg.image_size,
        glyph_alphabets=cfg.glyph_alphabets,
        glyph_characters=cfg.glyph_characters,
        glyph_drawers=cfg.glyph_drawers,
        options=BuildOptions(workers=0, seed=cfg.seed),
    )
    _log(f"{report.written} images in {report.shards} shards")
    return data


def write_eval_episodes(data: Path, out: Path, cfg: DemoConfig) -> Path:
    """OUT/<split>.h5: the fixed held-out episodes of ``cfg.eval_split`` (test.h5 by default);
    beside a shared ``cfg.data`` folder instead, so the runs that share data share episodes."""
    split, seed = cfg.eval_split, 10_000 + cfg.seed
    path = (data.parent if cfg.data else out) / f"{split}.h5"
    if path.exists():
        check_episodes(path, cfg.eval_episodes, cfg.shape(cfg.eval_goal_tasks), {"split": split, "seed": seed})
        return path
    _log(f"writing {cfg.eval_episodes} fixed held-out {split}-split family episodes to {path}")
    stream = FamilyStream(str(data), split, cfg.shape(cfg.eval_goal_tasks), seed=seed, episodes_per_visit=10)
    episodes = tqdm(islice(iter(stream), cfg.eval_episodes), total=cfg.eval_episodes, desc="episodes", unit="episode",
                    disable=not cfg.progress, mininterval=1.0)  # fmt: skip
    write_episodes(path, episodes, {"split": split, "seed": seed})
    return path


def check_episodes(path: Path, count: int, shape: EpisodeShape, info: dict) -> None:
    """Reuse ``path`` only if it holds the episodes this run would write (a file written for
    another --eval-episodes, shape or seed would otherwise be scored silently)."""
    with EpisodeStore(path) as store:
        held = (len(store), store.shape, store.info)
    if held != (count, shape, info):
        raise FewtaskError(
            f"{path} holds {held[0]} episodes of shape {held[1].as_dict()} ({held[2]}), not the {count} of shape "
            f"{shape.as_dict()} ({info}) this run asks for; delete it to write them, or keep the settings that wrote it"
        )


def train_one(algo: str, data: Path, out: Path, cfg: DemoConfig) -> dict:
    settings = {f.name: getattr(cfg, f.name) for f in fields(TrainSettings)}
    _log(f"training {algo} for {cfg.steps} outer steps ({cfg.batch} families each)")
    record = fit(FitConfig(data=str(data), out=str(out / algo), algo=algo, **settings))
    return record["result"]


def write_report(out: Path, cfg: DemoConfig, combined: dict, trained: dict[str, dict], seconds: float) -> Path:
    """report.md from the demo's results.json (``combined``) and the training records."""
    results, pairs = combined["methods"], combined["comparisons"]
    kind = "Omniglot" if cfg.root else "SYNTHETIC glyph"
    units = combined["extra"]["episodes"]
    plots.accuracy_figure(out / "accuracy.png", results, combined["steps"], units,
                          title=f"{kind} families: {cfg.ways}-way {cfg.shots}-shot, held-out")  # fmt: skip
    n = cfg.eval_steps
    source = (
        f"real Omniglot ({cfg.root})" if cfg.root
        else "the embedded **SYNTHETIC** glyph source (Unicode scripts rendered with matplotlib's fonts, not Omniglot)"
    )  # fmt: skip
    lines = [
        f"# fewtask: {' vs '.join(a.upper() for a in results)} on held-out augmented {kind.lower()} families",
        "",
        f"Data: {source}, {cfg.image_size}x{cfg.image_size}, {cfg.families_per_alphabet} augmented families per alphabet, "
        "alphabet-disjoint train/val/test splits.",
        f"Episodes: {cfg.ways}-way {cfg.shots}-shot, L={cfg.meta_tasks} meta-finetuning tasks (Q={cfg.queries}), "
        f"{cfg.goal_tasks} goal task{'s' if cfg.goal_tasks != 1 else ''} (V={cfg.val}); model conv4 ({cfg.hidden} filters, batch norm: task statistics); "
        f"alpha={cfg.alpha}, beta={cfg.beta} (Eq. 2: {cfg.meta_reduction} of the L task losses), gamma={cfg.gamma}; "
        f"Adam lr {cfg.lr}; {cfg.steps} outer steps x "
        f"{cfg.batch} families (MAML trains on all L+C tasks of each family as plain tasks).",
        f"Evaluation: {units} fixed {cfg.eval_split}-split family episodes (`{cfg.eval_split}.h5`, "
        f"{cfg.eval_goal_tasks} goal task each), mean accuracy on the goal task's validation set with 95% intervals.",
        "",
        f"| algorithm | steps | train s | ep/s | no meta-ft, 1 step | no meta-ft, {n} steps | meta-ft, 1 step | meta-ft, {n} steps "
        "| gain from meta-ft, 1 step (paired) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        plain, meta, gain = res[report.WITHOUT], res[report.WITH], res[report.GAIN]
        cell = lambda r, i: report.cell(r["accuracy"], i, 100, 1)  # noqa: E731
        t = trained[name]
        lines.append(
            f"| {name} | {t.get('step', 0)} | {t.get('seconds', 0):.0f} | {t.get('episodes_per_s', 0):.1f} | {cell(plain, min(1, n))} | {cell(plain, n)} "
            f"| {cell(meta, min(1, n))} | {cell(meta, n)} | {100 * gain['accuracy']['mean'][min(1, n)]:+.1f} ± {100 * gain['accuracy']['ci95'][min(1, n)]:.1f} |"
        )
    lines += ["", *comparison_lines(pairs, min(1, n))]
    lines += [
        "",
        "Accuracies in %; at 0 steps every method is at chance (labels are assigned per task), so 1 step "
        "(the number of goal steps used in training) is the headline. 'meta-ft' = the model first meta-finetunes on the family's L tasks "
        "(MALTML's V_beta), then finetunes on the goal task's support; MAML's finetuning uses alpha, MALTML's gamma.",
        "",
        "![accuracy vs finetuning steps](accuracy.png)",
        "",
        f"Wall time of this invocation: {seconds / 60:.1f} min (stages reused from an earlier run are not counted; "
        "training seconds are in the table). Per-run details: `*/config.json`, `*/metrics.jsonl`, `*/eval.json`.",
        "",
    ]
    path = out / "report.md"
    io.write_bytes(path, "\n".join(lines).encode())
    return path


def eval_paths(run: Path, cfg: DemoConfig) -> tuple[Path, Path]:
    """(summary json, per-episode curves) of a run's evaluation on ``cfg.eval_split``."""
    stem = "eval" if cfg.eval_split == "test" else f"eval-{cfg.eval_split}"
    return run / f"{stem}.json", run / f"{stem}-curves.pt"


def comparison_lines(pairs: dict[str, dict], step: int) -> list[str]:
    """The report's table of paired differences between methods at ``step`` finetuning steps."""
    if not pairs:
        return []
    cell = lambda d: f"{100 * d['accuracy']['mean'][step]:+.1f} ± {100 * d['accuracy']['ci95'][step]:.1f}"  # noqa: E731
    keys = (report.WITHOUT, report.WITH, report.AS_MEANT)
    lines = [
        f"Paired differences on the same episodes, accuracy after {step} step (percentage points, 95% intervals):",
        "",
        "| difference | both without meta-ft | both with meta-ft | first with, second without meta-ft |",
        "|---|---|---|---|",
    ]
    for name, d in pairs.items():
        label = name.replace("_minus_", " − ").upper()
        lines.append(f"| {label} | " + " | ".join(cell(d[k]) for k in keys) + " |")
    return lines


def evaluate_once(run: Path, test: Path, cfg: DemoConfig, trained_step: int) -> dict:
    """The run's eval.json (eval-<split>.json for another split than test) when it already
    scores this checkpoint on these episodes, else a fresh evaluation (with its curves)."""
    cached, curves = eval_paths(run, cfg)
    if cached.exists() and curves.exists():
        res = json.loads(cached.read_text())
        if res.get("schema_version") == report.SCHEMA_VERSION:  # older schemas: recomputed
            extra = res["extra"]
            same = (extra["trained_steps"], extra["episodes_file"], len(res["steps"]), extra["meta_reduction"])
            if same == (trained_step, str(test), cfg.eval_steps + 1, cfg.meta_reduction):
                _log(f"reusing {cached}")
                return res
    _log(f"evaluating {run.name} on {test.name}")
    res = evaluate_checkpoint(run, test, steps=cfg.eval_steps, batch_size=cfg.eval_batch, impl=cfg.eval_impl,
                              progress=cfg.progress, curves_out=curves)  # fmt: skip
    io.write_json(cached, res)
    return res


def combined_results(out: Path, cfg: DemoConfig, evals: dict[str, dict], trained: dict[str, dict]) -> dict:
    """One report over the demo's algorithms from their per-episode curves (the same
    episodes, so every comparison is paired); written to OUT/results.json (results-<split>.json
    for another split than test)."""
    curves = {algo: torch.load(eval_paths(out / algo, cfg)[1], weights_only=True) for algo in cfg.algorithms}
    first = next(iter(evals.values()))["extra"]
    extra = {k: first[k] for k in ("episodes", "episodes_file", "episode_shape")}
    records = {a: [{"seed": cfg.seed, **trained[a]}] for a in cfg.algorithms}
    config = {k: v for k, v in asdict(cfg).items()}
    combined = report.results(EXPERIMENT, config, "held-out family episode", {cfg.seed: curves}, range(cfg.eval_steps + 1),
                              records, extra=extra)  # fmt: skip
    io.write_json(out / ("results.json" if cfg.eval_split == "test" else f"results-{cfg.eval_split}.json"), combined)
    return combined


def run_demo(out: Path, cfg: DemoConfig) -> dict[str, dict]:
    t0 = time.perf_counter()
    out = io.ensure_writable(out)
    data = build_data(out, cfg)
    test = write_eval_episodes(data, out, cfg)
    evals, trained = {}, {}
    for algo in cfg.algorithms:
        trained[algo] = train_one(algo, data, out, cfg)
        evals[algo] = evaluate_once(out / algo, test, cfg, trained[algo]["step"])
    io.write_json(out / "demo_config.json", asdict(cfg))
    combined = combined_results(out, cfg, evals, trained)
    if cfg.learn_step_sizes:  # what each method learned, per level and parameter tensor
        plots.step_size_figure(out / "step_sizes.png", {a: evals[a]["extra"]["step_sizes"] for a in cfg.algorithms},
                               "demo: learned step sizes")  # fmt: skip
    path = write_report(out, cfg, combined, trained, time.perf_counter() - t0)
    _log(f"report: {path}")
    return combined


def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="folder for data, runs, report.md and accuracy.png"),
    steps: int = typer.Option(DemoConfig.steps, help="outer steps per algorithm"),
    eval_episodes: int = typer.Option(DemoConfig.eval_episodes, help="fixed held-out family episodes"),
    workers: int = typer.Option(DemoConfig.workers, help="DataLoader workers streaming families"),
    meta_reduction: str = typer.Option(DemoConfig.meta_reduction, help="Eq. 2's meta-finetuning step over the L task "
                                       "losses: sum (as the paper) or mean (an L times smaller step)"),
    learn_step_sizes: bool = typer.Option(False, "--learn-step-sizes/--no-learn-step-sizes",
                                          help="learn alpha, beta, gamma per parameter tensor (Meta-SGD-style; "
                                          "each method is then evaluated with its learned sizes)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars for episodes, training and evaluation (stderr)"),
    threads: int = typer.Option(1, min=1, help="torch intra-op threads (default 1: the model is small, and "
                                "2 threads beside another job evaluated 3x slower)"),
) -> None:
    """The main job end to end on the embedded synthetic glyphs: build shards, train MALTML and MAML, evaluate, report."""
    torch.set_num_threads(threads)
    run_demo(out, DemoConfig(steps=steps, eval_episodes=eval_episodes, workers=workers, meta_reduction=meta_reduction,
                             learn_step_sizes=learn_step_sizes, progress=progress))  # fmt: skip
    typer.echo((out / "report.md").read_text())
