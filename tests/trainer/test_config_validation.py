"""Every numeric option of every experiment is validated by its Config: a value below its
bound (a zero or negative step size, count or budget) or not finite is a one-line error
naming the option, at construction, before any work."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from fewtask_data import FewtaskError
from trainer.experiments.analyze import AnalyzeConfig
from trainer.experiments.continual import ContinualFamiliesConfig
from trainer.experiments.continual_oml import ContinualOMLConfig
from trainer.experiments.continual_rl import ContinualRLConfig
from trainer.experiments.fit import FitConfig
from trainer.experiments.navigation import NavigationConfig
from trainer.experiments.navigation_maml import NavigationMamlConfig
from trainer.experiments.options import bounds
from trainer.experiments.sinusoid import SinusoidConfig
from trainer.experiments.sinusoid_maml import SinusoidMamlConfig
from trainer.experiments.tune import TuneContinualConfig, TuneImageConfig, TuneNavigationConfig, TuneSinusoidConfig
from typer.testing import CliRunner

from trainer.cli import app

REQUIRED = {ContinualFamiliesConfig: {"families": "fams"}, FitConfig: {"data": "data"}, ContinualRLConfig: {"families": "fams"},
            AnalyzeConfig: {"checkpoint": "run"}, TuneContinualConfig: {"families": "fams"}}  # fmt: skip
CONFIGS = [SinusoidConfig, SinusoidMamlConfig, NavigationConfig, NavigationMamlConfig, ContinualOMLConfig,
           ContinualFamiliesConfig, FitConfig, ContinualRLConfig, AnalyzeConfig]  # fmt: skip
TUNING = [TuneImageConfig, TuneSinusoidConfig, TuneNavigationConfig, TuneContinualConfig]  # fewer numbers: the search's budget
FEWER_OPTIONS = {AnalyzeConfig: 6}  # analysis trains nothing: no step sizes or training counts


def numeric_options(config: type) -> list[tuple[dataclasses.Field, type]]:
    hints = typing.get_type_hints(config)
    out = []
    for f in dataclasses.fields(config):
        kind = next((a for a in typing.get_args(hints[f.name]) if a is not type(None)), hints[f.name])
        if "help" in f.metadata and kind in (int, float):
            out.append((f, kind))
    return out


CASES = [(c, f.name, kind) for c in CONFIGS + TUNING for f, kind in numeric_options(c)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_are_valid_and_every_experiment_has_numeric_options(config):
    config(**REQUIRED.get(config, {}))
    assert len(numeric_options(config)) >= FEWER_OPTIONS.get(config, 10)


@pytest.mark.parametrize("config, name, kind", CASES, ids=[f"{c.__name__}.{n}" for c, n, _ in CASES])
def test_a_value_below_the_bound_is_a_one_line_error(config, name, kind):
    field = next(f for f in dataclasses.fields(config) if f.name == name)
    low, strict, high = bounds(field, kind)
    bad = low if strict else (low - 1 if kind is int else low - 0.5)
    flag = "--" + name.replace("_", "-")
    with pytest.raises(FewtaskError, match=f"^{flag} must be ") as err:
        config(**REQUIRED.get(config, {}), **{name: kind(bad)})
    assert "\n" not in str(err.value)
    if high is not None:
        with pytest.raises(FewtaskError, match=f"^{flag} must be "):
            config(**REQUIRED.get(config, {}), **{name: kind(high + 1)})
    if kind is float:
        with pytest.raises(FewtaskError, match=f"^{flag} must be "):
            config(**REQUIRED.get(config, {}), **{name: math.nan})


def test_step_sizes_and_budgets_follow_their_rules():
    fields = {f.name: f for f in dataclasses.fields(NavigationConfig)}
    assert bounds(fields["alpha"], float) == (0.0, True, None)  # a step size must be > 0
    assert bounds(fields["max_minutes"], float) == (0.0, False, None)  # a budget may be 0: no limit
    assert bounds(fields["iterations"], int) == (0, False, None)
    assert bounds(fields["trajectories"], int) == (1, False, None)


@pytest.mark.parametrize("command", ["sinusoid", "fit", "navigation", "navigation-maml", "continual", "continual-oml"])
def test_per_step_step_sizes_without_learning_them_is_one_line_error(command, tmp_path):
    """Fixed sizes are the same at every step: --per-step-step-sizes alone would do nothing."""
    args = [command, "--per-step-step-sizes", "--out", str(tmp_path / "out")]
    args += {"fit": ["--data", str(tmp_path)], "continual": ["--families", str(tmp_path)]}.get(command, [])
    r = CliRunner().invoke(app, args)  # the console script prints a FewtaskError as one line (test_continual_cli)
    assert isinstance(r.exception, FewtaskError) and "--per-step-step-sizes needs --learn-step-sizes" in str(r.exception)
    assert not (tmp_path / "out").exists()
