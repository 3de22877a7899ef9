"""`fewtask-train tune`: a CI-sized hierarchical study on the embedded glyphs, a killed
search that resumes to the full count without rerunning finished trials, best.json as a
training config, and `--config` precedence (command line > file > defaults)."""

from __future__ import annotations

import dataclasses
import json

import optuna
import pytest
import torch

from trainer.experiments import tune
from trainer.experiments.fit import FitConfig
from trainer.experiments.options import Config, option, read_config_file, typer_command
from trainer.experiments.sinusoid import SinusoidConfig
from trainer.experiments.tune_space import stage_space
from trainer.experiments.tune_targets import SinusoidTarget

torch.set_num_threads(1)


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
    first_two = calls[:2]
    kill["on"], calls[:] = False, []
    summary = tune.run_tune(cfg, lambda c, out: tune.sinusoid_target(c))
    assert len(calls) == 2 and summary["methods"]["maml"]["stages"]["step_sizes"]["finished"] == 4
    study = optuna.load_study(study_name="maml:step_sizes", storage=tune.storage_url(tmp_path))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4 and [t.params for t in done[:2]] == [{"alpha": v["alpha"]} for v in first_two]
    assert len({t.params["alpha"] for t in done}) == 4  # the resumed sampler does not redraw old trials
    best = json.loads((tmp_path / "maml" / "best.json").read_text())
    assert best["algorithms"] == "maml" and "maml_alpha" in best and "alpha" not in best  # sinusoid's MAML step size
    SinusoidConfig(**read_config_file(SinusoidConfig, str(tmp_path / "maml" / "best.json")))


def test_search_spaces_fit_each_method():
    assert set(stage_space("image", "maltml", "step_sizes", 10)) == {"alpha", "beta", "gamma"}
    assert set(stage_space("image", "pretrain", "step_sizes", 10)) == {"alpha"}  # its goal step size
    assert "meta_multi_step_loss" in stage_space("image", "maltml", "steps", 10)
    assert "multi_step_loss" not in stage_space("image", "reptile", "steps", 10)
    assert stage_space("image", "fo-maltml", "steps", 10)["meta_steps"] == ("int", 1, 10)
    assert set(stage_space("sinusoid", "maml", "outer", 10)) == {"lr", "families"}


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
