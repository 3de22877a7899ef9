"""`fewtask-train tune`: CI-sized hierarchical studies (embedded glyphs, navigation crops,
continual frequency families) whose best.json the training command takes with --config, a
killed search that resumes to the full count without rerunning finished trials, trials
trained in chunks that resume exactly, validation families that are never the test ones,
bad methods and budgets as one-line errors, and `--config` precedence (command line > file
> defaults)."""

from __future__ import annotations

import dataclasses
import json
import math

import optuna
import pytest
import torch
from typer.testing import CliRunner

from fewtask_data import FewtaskError
from fewtask_data.sources.continual_sines import ContinualSpec, load_family_definitions
from trainer.cli import app
from trainer.experiments import tune, tune_targets
from trainer.experiments.fit import FitConfig
from trainer.experiments.navigation import NavigationConfig
from trainer.experiments.options import Config, option, read_config_file, typer_command
from trainer.experiments.sinusoid import SinusoidConfig
from trainer.experiments.tune_space import stage_space
from trainer.experiments.tune_targets import ContinualTarget, SinusoidTarget, validation_families

torch.set_num_threads(1)
runner = CliRunner()
# navigation and continual at test size, as the training commands' --config files (the trials' base)
NAV_BASE = {"trajectories": 3, "horizon": 6, "hidden": "8", "tasks": 2, "goal_tasks": 1, "maml_tasks": 3, "batch_families": 2}
CONTINUAL_BASE = {"width": 8, "eval_problems": 3, "val_problems": 1, "test_points": 10, "lr_grid": "0.01,0.1"}


def nav_families(tmp_path):
    from fewtask_data.builders.navigation import build_navigation_families

    build_navigation_families(tmp_path / "fam", counts={"train": 4, "val": 2, "test": 2})
    (tmp_path / "base.json").write_text(json.dumps(NAV_BASE))
    return tmp_path / "fam"


def continual_families(tmp_path):
    from fewtask_data.builders.continual_sines import build_continual_families

    spec = ContinualSpec(functions=2, steps_per_function=2, batch=3, train_pool=20, eval_pool=20)
    build_continual_families(tmp_path / "fams", families=4, test_families=2, spec=spec)
    (tmp_path / "base.json").write_text(json.dumps(CONTINUAL_BASE))
    return tmp_path / "fams"


@pytest.mark.slow
def test_tiny_image_study_end_to_end(tmp_path):
    cfg = tune.TuneImageConfig(tiny=True, method="maltml", stages="outer,step_sizes", trials=2, steps=3, evals=2,
                               val_episodes=6, out=tmp_path)  # fmt: skip
    summary = tune.run_tune(cfg, tune.image_target)
    rec = summary["methods"]["maltml"]
    assert [s["finished"] for s in rec["stages"].values()] == [2, 2]
    best = json.loads((tmp_path / "maltml" / "best.json").read_text())
    assert best["algo"] == "maltml" and {"lr", "batch", "alpha", "beta", "gamma"} <= set(best)
    assert best["lr"] == rec["stages"]["outer"]["best_params"]["lr"]  # stage 1's best fixed in stage 2
    fit_cfg = FitConfig(**read_config_file(FitConfig, str(tmp_path / "maltml" / "best.json")))
    assert fit_cfg.data == str(tmp_path / "data") and fit_cfg.ways == 3 and fit_cfg.hidden == 4
    for name in ("outer-history.png", "step_sizes-history.png", "step_sizes-importance.png"):
        assert (tmp_path / "maltml" / name).stat().st_size > 0
    assert "| step_sizes | 2 |" in (tmp_path / "report.md").read_text()
    studies = optuna.get_all_study_names(tune.storage_url(tmp_path))
    assert sorted(studies) == ["maltml:outer", "maltml:step_sizes"]
    # Every trial was scored on the validation split only.
    assert (tmp_path / "val.h5").exists() and not list(tmp_path.rglob("test.h5"))


def test_killed_search_resumes_without_rerunning_finished_trials(tmp_path, monkeypatch):
    calls = []
    real = SinusoidTarget.trial

    def trial(self, method, values, folder, report):
        calls.append(dict(values))
        if len(calls) == 3 and kill["on"]:
            raise KeyboardInterrupt  # the search is killed during its third trial
        return real(self, method, values, folder, report)

    kill = {"on": True}
    monkeypatch.setattr(SinusoidTarget, "trial", trial)
    cfg = tune.TuneSinusoidConfig(method="maml", stages="step_sizes", trials=4, steps=2, evals=1, val_families=8,
                                  out=tmp_path, pruner="none")  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        tune.run_tune(cfg, lambda c, out: tune.sinusoid_target(c))
    first_two, killed = calls[:2], calls[2]
    kill["on"], calls[:] = False, []
    summary = tune.run_tune(cfg, lambda c, out: tune.sinusoid_target(c))
    assert len(calls) == 2 and summary["methods"]["maml"]["stages"]["step_sizes"]["finished"] == 4
    study = optuna.load_study(study_name="maml:step_sizes", storage=tune.storage_url(tmp_path))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4 and [t.params for t in done[:2]] == [{"alpha": v["alpha"]} for v in first_two]
    # the killed trial's point runs again first, in its own folder (its training resumes from its checkpoint)
    assert calls[0]["alpha"] == killed["alpha"] and done[2].user_attrs["resumes"] == 2
    assert done[2].user_attrs["folder"] == str(tmp_path / "maml" / "step_sizes-002")
    assert len({t.params["alpha"] for t in done}) == 4  # the resumed sampler does not redraw old trials
    best = json.loads((tmp_path / "maml" / "best.json").read_text())
    assert best["algorithms"] == "maml" and "maml_alpha" in best and "alpha" not in best  # sinusoid's MAML step size
    SinusoidConfig(**read_config_file(SinusoidConfig, str(tmp_path / "maml" / "best.json")))


@pytest.mark.slow
def test_tiny_navigation_study_writes_a_config_navigation_takes(tmp_path):
    fam = nav_families(tmp_path)
    cfg = tune.TuneNavigationConfig(families=str(fam), config=str(tmp_path / "base.json"), method="maltml,pretrain",
                                    trials=2, steps=2, evals=2, out=tmp_path / "tune")  # fmt: skip
    summary = tune.run_tune(cfg, tune.navigation_target)
    rec = summary["methods"]["maltml"]["stages"]
    assert rec["outer"]["finished"] == rec["step_sizes"]["finished"] == 2
    assert set(rec["outer"]["best_params"]) == {"max_kl", "batch_families"}  # TRPO's rate
    assert set(summary["methods"]["pretrain"]["stages"]["step_sizes"]["best_params"]) == {"gamma"}  # its goal step
    assert summary["methods"]["pretrain"]["stages"]["steps"].get("skipped")  # nothing per level to search
    best = tmp_path / "tune" / "maltml" / "best.json"
    values = json.loads(best.read_text())
    assert values["methods"] == "maltml" and values["iterations"] == 2 and values["horizon"] == 6
    assert {"alpha", "beta", "gamma", "max_kl"} <= set(values)
    r = runner.invoke(app, ["navigation", "--config", str(best), "--seeds", "0", "--eval-steps", "1",
                            "--out", str(tmp_path / "run")])  # fmt: skip
    assert r.exit_code == 0, r.output
    trained = json.loads((tmp_path / "run" / "results.json").read_text())
    assert trained["config"]["alpha"] == values["alpha"] and trained["methods"]["maltml"]["train"][0]["iterations"] == 2
    assert "| steps | skipped:" in (tmp_path / "tune" / "report.md").read_text()


def test_navigation_trials_score_val_crops_and_resume_exactly_in_chunks(tmp_path):
    from fewtask_data.sources.navigation import load_navigation_families

    fam = nav_families(tmp_path)
    crops = load_navigation_families(fam)
    cfg = tune.TuneNavigationConfig(families=str(fam), config=str(tmp_path / "base.json"), steps=2, evals=2, out=tmp_path)
    target = tune.navigation_target(cfg, tmp_path)
    inside = lambda g, c: bool(((g >= c[:, None, :2]) & (g <= c[:, None, :2] + c[:, None, 2:])).all())  # noqa: E731
    assert inside(target.meta_goals, crops["val"]) and inside(target.goal_goals, crops["val"])
    assert not inside(target.goal_goals, crops["test"])
    seen = []
    chunked = target.trial("maml", {"alpha": 0.3}, tmp_path / "a", lambda n, s: seen.append(n))
    whole = dataclasses.replace(target, evals=1).trial("maml", {"alpha": 0.3}, tmp_path / "b", lambda n, s: None)
    assert seen == [1, 2] and chunked == whole  # 1 + 1 iterations resumed = 2 at once
    assert set(target.space("maml", "steps")) <= {f.name for f in dataclasses.fields(NavigationConfig)}


@pytest.mark.slow
def test_tiny_continual_study_writes_a_config_continual_takes(tmp_path):
    fams = continual_families(tmp_path)
    cfg = tune.TuneContinualConfig(families=fams, config=str(tmp_path / "base.json"), method="maltml,oml", trials=2,
                                   steps=2, evals=2, val_families=3, out=tmp_path / "tune")  # fmt: skip
    summary = tune.run_tune(cfg, lambda c, out: tune.continual_target(c))
    maltml, oml = (summary["methods"][m]["stages"] for m in ("maltml", "oml"))
    assert [s["finished"] for s in maltml.values()] == [2, 2, 2]
    assert set(maltml["step_sizes"]["best_params"]) == {"inner_lr", "beta"}
    assert set(maltml["steps"]["best_params"]) == {"meta_steps"}
    assert set(oml["outer"]["best_params"]) == {"lr", "problems"} and oml["steps"].get("skipped")
    assert all(s["best_value"] < 0 for s in maltml.values())  # minus an MSE
    best = tmp_path / "tune" / "maltml" / "best.json"
    values = json.loads(best.read_text())
    assert values["methods"] == "maltml" and values["steps"] == 2 and values["width"] == 8
    r = runner.invoke(app, ["continual", "--config", str(best), "--no-progress", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output  # best.json names the families: no --families needed
    trained = json.loads((tmp_path / "run" / "results.json").read_text())
    assert trained["config"]["inner_lr"] == values["inner_lr"] and trained["methods"]["maltml"]["train"][0]["steps"] == 2


def test_continual_validation_families_are_never_the_test_ones(tmp_path):
    defs = load_family_definitions(continual_families(tmp_path))
    val = validation_families(defs, 3, 1000)
    train = defs.frequencies["train"]
    assert len(val.frequencies["test"]) == 3 and not set(val.frequencies["test"]) & {*train, *defs.frequencies["test"]}
    assert all(min(train) <= w <= max(train) for w in val.frequencies["test"])
    assert not any(torch.equal(val.pools["test"], p) for p in defs.pools.values())
    assert val.pools["train"] is defs.pools["train"] and val.frequencies["train"] == train  # training untouched
    with pytest.raises(FewtaskError, match="--val-seed 0 draws the family build's own function pool"):
        validation_families(defs, 3, 0)  # the build's seed


def test_killed_continual_search_resumes_and_chunks_resume_exactly(tmp_path, monkeypatch):
    fams = continual_families(tmp_path)
    calls, kill = [], {"on": True}
    real = ContinualTarget.trial

    def trial(self, method, values, folder, report):
        calls.append(dict(values))
        if len(calls) == 3 and kill["on"]:
            raise KeyboardInterrupt  # the search is killed during its third trial
        return real(self, method, values, folder, report)

    monkeypatch.setattr(ContinualTarget, "trial", trial)
    cfg = tune.TuneContinualConfig(families=fams, config=str(tmp_path / "base.json"), method="oml", stages="step_sizes",
                                   trials=4, steps=2, evals=2, val_families=2, out=tmp_path / "tune", pruner="none")  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        tune.run_tune(cfg, lambda c, out: tune.continual_target(c))
    kill["on"], calls[:] = False, []
    summary = tune.run_tune(cfg, lambda c, out: tune.continual_target(c))
    assert len(calls) == 2 and summary["methods"]["oml"]["stages"]["step_sizes"]["finished"] == 4
    target = tune.continual_target(cfg)
    chunked = real(target, "oml", {"inner_lr": 0.01}, tmp_path / "a", lambda n, s: None)
    whole = real(dataclasses.replace(target, evals=1), "oml", {"inner_lr": 0.01}, tmp_path / "b", lambda n, s: None)
    assert chunked == pytest.approx(whole, rel=1e-6)  # 1 + 1 outer steps resumed = 2 at once


@pytest.mark.parametrize(
    "config, message",
    [
        (lambda t: tune.TuneNavigationConfig(method="maltml,reptile", out=t), "unknown navigation method reptile; choose from"),
        (lambda t: tune.TuneNavigationConfig(method="oracle", out=t), "unknown navigation method oracle"),
        (lambda t: tune.TuneContinualConfig(families=t, method="maml", out=t), "unknown continual method maml; choose from"),
        (lambda t: tune.TuneContinualConfig(families=t, steps=0, out=t), "^--steps must be >= 1"),
        (lambda t: tune.TuneNavigationConfig(trials=0, out=t), "^--trials must be >= 1"),
        (lambda t: tune.TuneContinualConfig(families=t, val_families=0, out=t), "^--val-families must be >= 1"),
        (lambda t: tune.TuneSinusoidConfig(train_seeds="0,0", out=t), "^--train-seeds must be distinct"),
    ],
)
def test_bad_methods_and_budgets_are_one_line_errors_before_any_work(tmp_path, config, message):
    out = tmp_path / "tune"
    with pytest.raises(FewtaskError, match=message) as err:
        tune.run_tune(config(out), lambda c, o: pytest.fail("built a target"))
    assert "\n" not in str(err.value) and not out.exists()


def test_a_trial_over_several_training_seeds_scores_their_mean(tmp_path):
    cfg = tune.TuneSinusoidConfig(method="maml", stages="step_sizes", trials=1, steps=2, evals=1, val_families=8,
                                  out=tmp_path / "tune", pruner="none", train_seeds="0,3")  # fmt: skip
    tune.run_tune(cfg, lambda c, out: tune.sinusoid_target(c))
    (trial,) = optuna.load_study(study_name="maml:step_sizes", storage=tune.storage_url(tmp_path / "tune")).trials
    target = tune.sinusoid_target(cfg)
    alone = {s: target.trial("maml", trial.params, tmp_path / f"alone-{s}", lambda n, v: None, seed=s) for s in (0, 3)}
    assert alone[0] != alone[3]  # the seed reaches training
    assert trial.user_attrs["seed_scores"] == {"0": pytest.approx(alone[0]), "3": pytest.approx(alone[3])}
    assert trial.value == pytest.approx((alone[0] + alone[3]) / 2)
    assert (tmp_path / "tune" / "maml" / "step_sizes-000" / "seed-3").is_dir()


def test_tune_config_is_the_training_commands_base(tmp_path, monkeypatch):
    """`tune ... --config FILE` gives the trials' base (the training command's options), not tune's own."""
    seen = {}
    monkeypatch.setattr(tune, "run_tune", lambda cfg, target_of: seen.update(cfg=cfg) or {"methods": {}})
    (tmp_path / "base.json").write_text(json.dumps(NAV_BASE))
    r = runner.invoke(app, ["tune", "navigation", "--config", str(tmp_path / "base.json"), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert seen["cfg"].config == str(tmp_path / "base.json") and seen["cfg"].trials == 8


def test_search_spaces_fit_each_method():
    assert set(stage_space("image", "maltml", "step_sizes", 10)) == {"alpha", "beta", "gamma"}
    assert set(stage_space("image", "pretrain", "step_sizes", 10)) == {"alpha"}  # its goal step size
    assert set(stage_space("image", "pretrain", "outer", 10)) == {"lr", "flat_batch"}  # it trains on flat batches
    assert set(stage_space("sinusoid", "pretrain", "outer", 10)) == {"lr", "families"}  # there on batches of families
    assert "meta_multi_step_loss" in stage_space("image", "maltml", "steps", 10)
    assert "multi_step_loss" not in stage_space("image", "reptile", "steps", 10)
    assert stage_space("image", "fo-maltml", "steps", 10)["meta_steps"] == ("int", 1, 10)
    assert set(stage_space("sinusoid", "maml", "outer", 10)) == {"lr", "families"}
    assert set(stage_space("navigation", "maml", "outer", 10, "trpo")) == {"max_kl", "maml_tasks"}
    assert set(stage_space("navigation", "maltml", "outer", 10, "adam")) == {"lr", "batch_families"}
    assert set(stage_space("navigation", "maml", "step_sizes", 10)) == {"alpha", "gamma"}  # gamma: its goal step
    assert set(stage_space("navigation", "fo-maltml", "step_sizes", 10)) == {"alpha", "beta", "gamma"}
    assert stage_space("navigation", "pretrain", "steps", 10) == {}
    assert set(stage_space("continual", "maltml", "step_sizes", 10)) == {"inner_lr", "beta"}
    assert set(stage_space("continual", "oml", "outer", 10)) == {"lr", "problems"}
    assert stage_space("continual", "maltml", "steps", 10) == {"meta_steps": ("int", 1, 3)}


@dataclasses.dataclass(kw_only=True)
class _Toy(Config):
    steps: int = option(5, "steps")
    lr: float = option(0.1, "rate")
    name: str = option("a", "name")
    config: str = option("", "file")


def test_config_file_precedence(tmp_path):
    from typer.testing import CliRunner
    import typer

    seen = {}
    app = typer.Typer()
    app.command("toy")(typer_command(_Toy, lambda c: seen.update(dataclasses.asdict(c)), "toy"))
    app.command("other")(lambda: None)
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"steps": 7, "lr": 0.5}))
    result = CliRunner().invoke(app, ["toy", "--config", str(path), "--lr", "0.2"])
    assert result.exit_code == 0, result.output
    assert (seen["steps"], seen["lr"], seen["name"]) == (7, 0.2, "a")  # file over default, command line over file
    path.write_text(json.dumps({"stepz": 7}))
    result = CliRunner().invoke(app, ["toy", "--config", str(path)])
    assert result.exit_code != 0 and "unknown options stepz" in str(result.exception)


class BowlTarget(tune_targets.Target):
    """A target whose score peaks at the base config's values (lr 1e-3, alpha 0.5)."""

    kind, steps = "bowl", 4
    base = dataclasses.make_dataclass("Base", [("lr", float, 1e-3), ("alpha", float, 0.5), ("batch", int, 3)])()

    def space(self, method, stage):
        return {"outer": {"lr": ("log", 1e-4, 1e-2), "batch": ("cat", [2, 4, 8])},
                "step_sizes": {"alpha": ("log", 0.05, 1.0)}}.get(stage, {})  # fmt: skip

    def trial(self, method, values, folder, report):
        return -((math.log10(values["lr"]) + 3) ** 2) - (values.get("alpha", 0.5) - 0.5) ** 2

    def best_config(self, method, values):
        return dict(values)


def test_each_stage_starts_from_its_incumbent_and_never_adopts_a_worse_best(tmp_path, monkeypatch):
    cfg = dataclasses.make_dataclass("Cfg", [("stages", str), ("trials", int), ("seed", int), ("pruner", str)])(
        "outer,step_sizes,steps", 3, 0, "none")
    trained = []
    real = BowlTarget.trial
    monkeypatch.setattr(BowlTarget, "trial", lambda self, *a: trained.append(a[1]) or real(self, *a))
    record = tune.tune_method(cfg, BowlTarget(), "maml", tmp_path)
    outer, sizes = record["stages"]["outer"], record["stages"]["step_sizes"]
    assert outer["incumbent"] == {"lr": 1e-3} and sizes["incumbent"] == {"alpha": 0.5}  # batch 3 is not a choice
    study = optuna.load_study(study_name="maml:outer", storage=tune.storage_url(tmp_path))
    assert study.trials[0].params["lr"] == 1e-3  # the first trial is the start
    assert record["best"]["lr"] == 1e-3 and record["best"]["alpha"] == 0.5  # the optimum, kept by every stage
    assert sizes["best_value"] >= outer["best_value"]
    # Stage 2's incumbent is what stage 1's best trained: its score is reused, one training fewer.
    first = optuna.load_study(study_name="maml:step_sizes", storage=tune.storage_url(tmp_path)).trials[0]
    best_outer = study.trials[outer["best_trial"]]
    assert first.params == {"alpha": 0.5} and first.user_attrs["reused_from"] == f"maml:outer#{best_outer.number}"
    assert first.value == best_outer.value and sizes["finished"] == 3 and len(trained) == 3 + 2


def test_a_reused_incumbent_scores_what_training_it_again_scores(tmp_path):
    """The premise of reusing: on a real target, training the incumbent's values gives the reused score exactly."""
    cfg = tune.TuneSinusoidConfig(method="maml", stages="outer,step_sizes", trials=2, steps=2, evals=2, val_families=8,
                                  out=tmp_path, pruner="none")  # fmt: skip
    target = tune.sinusoid_target(cfg)
    record = tune.run_tune(cfg, lambda c, out: target)["methods"]["maml"]
    storage = tune.storage_url(tmp_path)
    reused = optuna.load_study(study_name="maml:step_sizes", storage=storage).trials[0]
    assert reused.user_attrs["reused_from"].startswith("maml:outer#")
    again = []
    values = {**record["stages"]["outer"]["best_params"], **reused.params}
    score = target.trial("maml", values, tmp_path / "again", lambda step, s: again.append((step, s)))
    assert score == reused.value and dict(again) == reused.intermediate_values


def test_study_snapshot_records_every_trial_of_an_unfinished_search(tmp_path):
    """scripts/study_snapshot.py: a search killed mid-way is recorded trial by trial (tune.json waits for the end)."""
    import subprocess
    import sys

    storage = tune.storage_url(tmp_path)
    study = optuna.create_study(study_name="maml:outer", storage=storage, direction="maximize")
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    for lr, value in ((1e-3, 0.4), (3e-3, 0.5)):
        study.add_trial(optuna.trial.create_trial(params={"lr": lr}, distributions=space, value=value))
    out = tmp_path / "snap"
    script = [sys.executable, "scripts/study_snapshot.py"]
    run = subprocess.run([*script, str(tmp_path), "--out", str(out)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-500:]
    rows = (out / "maml-outer.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,value,lr") and len(rows) == 3 and rows[2].startswith("1,COMPLETE,0.5,0.003")
    assert "| maml:outer | COMPLETE 2 | 0.5000 (trial 1: {'lr': 0.003}) |" in (out / "studies.md").read_text()
    missing = subprocess.run([*script, str(out), "--out", str(out)], capture_output=True, text=True, check=False)
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error: no study.db in")


def test_a_trial_left_running_by_a_killed_process_is_requeued_once(tmp_path):
    study = optuna.create_study(study_name="maml:outer", storage=tune.storage_url(tmp_path), direction="maximize")
    study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})  # a SIGKILL leaves it RUNNING
    for _ in range(2):  # resumed twice: one requeue
        tune.requeue_killed(study, tmp_path / "maml", "outer")
    (killed, again) = study.trials
    assert killed.state == optuna.trial.TrialState.FAIL and again.state == optuna.trial.TrialState.WAITING
    assert again.system_attrs["fixed_params"] == killed.params  # an enqueued trial's point
    assert again.user_attrs == {"resumes": 0, "folder": str(tmp_path / "maml" / "outer-000")}


def test_collect_script_copies_what_a_tuned_rerun_folder_reports(tmp_path):
    """scripts/collect_tuned_omniglot.sh: trials of an unfinished search, a finished search's files,
    a finished rerun's eval and an unfinished one's metrics as partial; checkpoints stay behind."""
    import os
    import subprocess
    import sys

    work, dest = tmp_path / "work", tmp_path / "docs"
    search = work / "tune-omniglot" / "maml"
    (search / "maml").mkdir(parents=True)
    study = optuna.create_study(study_name="maml:outer", storage=tune.storage_url(search), direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 1e-3}, distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}, value=0.4))
    for name in ("tune.json", "maml/best.json", "maml/outer-history.png"):
        (search / name).write_text(name)
    (search / "report.md").write_text("Config: `maml/best.json`.\n![maml/outer-history.png](maml/outer-history.png)\n")
    done, running = work / "omniglot-rerun" / "maml-seed0", work / "omniglot-rerun" / "maml-seed1"
    for run in (done, running):
        run.mkdir(parents=True)
        for name in ("metrics.jsonl", "config.json", "checkpoint.pt"):
            (run / name).write_text(name)
    (done / "eval.json").write_text("{}")
    env = {**os.environ, "PY": sys.executable}
    r = subprocess.run(["scripts/collect_tuned_omniglot.sh", str(work), str(dest)], capture_output=True, text=True,
                       check=False, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-500:]
    assert (dest / "studies" / "maml-outer.csv").read_text().splitlines()[1].startswith("0,COMPLETE,0.4")
    assert sorted(p.name for p in (dest / "tune" / "maml").iterdir()) == ["best.json", "outer-history.png", "report.md",
                                                                         "tune.json"]  # fmt: skip
    # The report's links point at the files beside it (tune keeps them in a subfolder).
    assert (dest / "tune" / "maml" / "report.md").read_text().splitlines() == [
        "Config: `best.json`.", "![maml/outer-history.png](outer-history.png)"]
    assert sorted(p.name for p in (dest / "rerun" / "maml-seed0").iterdir()) == ["config.json", "eval.json", "metrics.jsonl"]
    assert sorted(p.name for p in (dest / "rerun" / "maml-seed1").iterdir()) == ["config.json", "metrics-partial.jsonl"]
    wrong = subprocess.run(["scripts/collect_tuned_omniglot.sh", str(dest), str(dest)], capture_output=True, text=True,
                           check=False)  # fmt: skip
    assert wrong.returncode == 2 and wrong.stderr.strip().startswith("error: no tune-omniglot folder in")
