"""Configs whose fields are also command-line options, declared once.

A field made with `option` carries its default and help text; `typer_command` turns a
config dataclass into a typer command with one option per such field (same name,
default and help), so the config, its command and the other code that builds the
config (the demo, scripts) cannot drift apart. Fields made with plain defaults are
settings without an option. An option several commands share (seed, resume, the step
sizes, the episode shape, ...) is declared once below and made by `run_option`,
`step_size_option`, `shape_option` or `methods_option`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from pathlib import Path
from typing import Any, Callable

import typer

from fewtask_data.cli.options import SHAPE_OPTIONS
from fewtask_data.errors import FewtaskError
from trainer.core.step_sizes import check_per_step


def option(default: Any = dataclasses.MISSING, help: str = "", *decls: str, cli_type: type | None = None,
           low: float | None = None) -> Any:  # fmt: skip
    """A dataclass field that is also an option: ``default`` (none: required), ``help``,
    typer's parameter declarations (e.g. "--tasks", "-L"), ``cli_type`` when the
    command line takes another type than the field (a Path for a str field), and ``low``,
    its smallest allowed value where it differs from `bounds`' rule."""
    meta = {"help": help, "decls": decls, "cli_type": cli_type, "low": low}
    return dataclasses.field(default=default, metadata=meta)


# Smallest allowed values of numeric options, by name (an option means the same in every
# command; a field overrides it with ``option(low=...)``). Otherwise an int must be >= 0
# and a float > 0 (step sizes, learning rates, KL limits); budgets may be 0 (no limit).
AT_LEAST: dict[str, float] = {
    **dict.fromkeys(("max_minutes", "max_seconds", "min_lr"), 0.0),
    **dict.fromkeys(("eval_families", "eval_tasks", "test_goals", "eval_problems", "ways"), 2),
    **dict.fromkeys((
        "families", "shots", "queries", "val", "goal_tasks", "oracle_tasks", "eval_val", "log_every", "checkpoint_every",
        "threads", "meta_batch", "eval_shots", "support_draws", "trajectories", "horizon", "batch_families", "maml_tasks",
        "functions", "steps_per_function", "batch", "rand_points", "train_pool", "eval_pool", "problems", "val_problems",
        "test_points", "pretrain_points", "families_per_step", "goal_problems", "hidden", "episodes_per_visit",
        "flat_batch", "order", "tasks", "msl_anneal_steps", "trials", "evals", "val_episodes", "val_families",
    ), 1),
}  # fmt: skip
AT_MOST: dict[str, float] = {"order": 3}


def bounds(field: dataclasses.Field, kind: type) -> tuple[float, bool, float | None]:
    """(lowest value, whether it is excluded, highest value) of a numeric option field."""
    low = field.metadata.get("low")
    if low is None:
        low = AT_LEAST.get(field.name, 0.0 if kind is float else 0)
        strict = kind is float and field.name not in AT_LEAST
    else:
        strict = False
    return low, strict, AT_MOST.get(field.name)


def check_numbers(config: Any) -> None:
    """A one-line error for the first numeric option of ``config`` outside its bounds
    (or not finite), naming the option."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        kind = hints[f.name]
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # Optional[int] -> int
        value = getattr(config, f.name)
        if "help" not in f.metadata or kind not in (int, float) or value is None or isinstance(value, bool):
            continue
        low, strict, high = bounds(f, kind)
        flag = "--" + f.name.replace("_", "-")
        if not math.isfinite(value) or value < low or (strict and value == low) or (high is not None and value > high):
            rule = f"> {low}" if strict else f">= {low}" + (f" and <= {high}" if high is not None else "")
            raise FewtaskError(f"{flag} must be {rule}, got {value}; see --help for its meaning")


class Config:
    """The base of every experiment config: construction validates every numeric option
    (`check_numbers`), so a command, a script and a test building the config all get the
    same one-line error. A subclass with its own ``__post_init__`` calls this one."""

    # whether a ``config`` option holds this command's own option values (`with_config_file`);
    # `tune`'s holds the training command's, which its targets read
    own_config_file: typing.ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_numbers(self)
        if hasattr(self, "per_step_step_sizes"):
            check_per_step(getattr(self, "learn_step_sizes", False), self.per_step_step_sizes)


_KEEP = object()

# Options that mean the same in several trainer commands, declared once: name -> (default,
# help, typer declarations). A command passes its own default or help only where it differs
# (e.g. a different step count, or what its checkpoints hold).
RUN_OPTIONS: dict[str, tuple[Any, str, tuple[str, ...]]] = {
    "steps": (70000, "Outer training steps per method.", ()),
    "tasks": (5, "Meta-finetuning tasks per family (L).", ("--tasks", "-L")),
    "shots": (5, "Support examples per task (K).", ("--shots", "-K")),
    "goal_tasks": (2, "Goal tasks per family (C).", ()),
    "lr": (0.001, "Adam outer learning rate.", ()),
    "task_steps": (1, "Task steps r.", ()),
    "meta_steps": (1, "Meta steps m.", ()),
    "goal_steps": (1, "Finetuning steps on goal tasks during training.", ()),
    "order": (3, "MALTML derivative order: 3 exact, 2 first-order task steps, 1 fully first order.", ()),
    "meta_reduction": ("sum", "Eq. 2's meta-finetuning step over the L task losses: sum (as the paper) or mean.", ()),
    "learn_step_sizes": (False, "Learn alpha/beta/gamma per parameter tensor (MALTML, the MAML family and the "
                                "maml-oracle by their gradients; FO-MALTML beta and gamma by the first-order "
                                "hypergradient).", ()),
    "per_step_step_sizes": (False, "One step size per step as well as per level and parameter tensor (MAML++'s "
                                   "per-layer per-step sizes; with --learn-step-sizes each is learned).", ()),
    # MAML++'s stabilizers (Antoniou et al. 2019) and the zeroing trick, all off by default (docs/tuning.md).
    "multi_step_loss": (False, "MAML++'s multi-step loss: the target loss after every inner step of the level the outer "
                               "loss adapts with (MALTML: goal steps; MAML, FOMAML, ANIL, BOIL: task steps), weighted "
                               "and annealed toward the last step over --msl-anneal-steps outer steps.", ()),
    "meta_multi_step_loss": (False, "MALTML: the multi-step loss over its meta steps as well (the goal objective "
                                    "from every meta step's parameters).", ()),
    "msl_anneal_steps": (1000, "Outer steps over which the multi-step loss weights anneal to the last step; after "
                               "them only the last step's loss counts (as MAML++).", ()),
    "first_order_steps": (0, "Derivative-order annealing: train first order for the first N outer steps, then at "
                             "--order.", ()),
    "cosine_lr": (False, "Cosine annealing of the outer learning rate from --lr to --min-lr over the steps.", ()),
    "min_lr": (0.0, "The outer learning rate at the end of --cosine-lr.", ()),
    "zero_head": (False, "The zeroing trick (Ye & Chao 2022): the head starts every task and episode at zero.", ()),
    "impl": ("vmap", "vmap (fast) or loop (plain-loop reference, slow).", ()),
    "compile": (None, "torch.compile the outer step (default: when steps >= 5000).", ("--compile/--no-compile",)),
    "seed": (0, "Seed for initialization and training batches.", ()),
    "eval_seed": (0, "Seed of the held-out evaluation tasks.", ()),
    "resume": (False, "Continue from checkpoints in --out (exactly).", ()),
    "eval_only": (False, "Skip training: evaluate the checkpoints in --out.", ()),
    "log_every": (100, "Write metrics.jsonl every N steps.", ()),
    "checkpoint_every": (5000, "Checkpoint every N steps.", ()),
    "threads": (1, "torch intra-op threads.", ()),
    "progress": (True, "Show progress bars.", ()),
}


def run_option(name: str, default: Any = _KEEP, help: str | None = None) -> Any:
    """The shared option ``name`` of ``RUN_OPTIONS``, with this command's default or help where given."""
    shared_default, shared_help, decls = RUN_OPTIONS[name]
    return option(shared_default if default is _KEEP else default, help or shared_help, *decls)


# MALTML's three step sizes, named alike in every command that trains it.
STEP_SIZES = {"alpha": "Task step size", "beta": "Meta step size", "gamma": "Goal-task step size"}


def step_size_option(name: str, default: float, detail: str) -> Any:
    """MALTML's step size ``name`` (alpha, beta or gamma); ``detail`` says what it steps on in this command."""
    return option(default, f"{STEP_SIZES[name]} ({detail}).")


def shape_option(name: str, default: Any = _KEEP) -> Any:
    """An episode-shape field: the option of the same name of `fewtask-data episodes` (its
    help), with this command's default where given."""
    shared_default, help = SHAPE_OPTIONS[name]
    return option(shared_default if default is _KEEP else default, help)


def methods_option(choices: tuple[str, ...] | dict, default: str | None = None) -> Any:
    """``--methods``: a comma-separated choice from ``choices`` (default: all of them)."""
    return option(default or ",".join(choices), f"Comma-separated methods from: {', '.join(choices)}.")


def option_fields(config: type) -> list[dataclasses.Field]:
    """The option fields, the config's own first (what its command is about), then those
    it inherits, each group in declaration order."""
    own = config.__dict__.get("__annotations__", {})
    fields = [f for f in dataclasses.fields(config) if "help" in f.metadata]
    return [f for f in fields if f.name in own] + [f for f in fields if f.name not in own]


def typer_command(config: type, run: Callable[[Any], None], doc: str) -> Callable[..., None]:
    """A typer command with one option per option field of ``config``; it calls
    ``run(config(**values))``. ``doc`` is the command's help."""
    hints = typing.get_type_hints(config)
    params, annotations = [], {}
    for f in option_fields(config):
        kind = f.metadata["cli_type"] or hints[f.name]
        default = ... if f.default is dataclasses.MISSING else f.default
        default = kind(default) if f.metadata["cli_type"] and default is not ... else default
        info = typer.Option(default, *f.metadata["decls"], help=f.metadata["help"])
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=kind))
        annotations[f.name] = kind

    def command(ctx: typer.Context, **values: Any) -> None:
        values = {k: str(v) if isinstance(v, Path) and hints[k] is str else v for k, v in values.items()}
        if values.get("config") and config.own_config_file:
            values = with_config_file(config, values, explicit_options(ctx))
        run(config(**values))

    # typer hands the command its context (which options the command line gave) through this parameter.
    params.insert(0, inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context))
    annotations["ctx"] = typer.Context

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = annotations
    command.__doc__ = doc
    return command


# `--config FILE`: a JSON object of option values (what `fewtask-train tune` writes as best.json).
CONFIG_HELP = ("JSON file of option values, e.g. best.json from `fewtask-train tune`: its values replace the "
               "defaults; options given on the command line replace its values.")


def config_option() -> Any:
    return option("", CONFIG_HELP)


def explicit_options(ctx: Any) -> set[str]:
    """The options a command line (typer's context ``ctx``) gives explicitly, not by default."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, src in sources.items() if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")}


def read_config_file(config: type, path: str) -> dict[str, Any]:
    """The option values of a JSON config file, checked against ``config``'s option fields."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise FewtaskError(f"cannot read --config {path}: {err}") from None
    if not isinstance(data, dict):
        raise FewtaskError(f"--config {path} must hold a JSON object of option values")
    names = {f.name for f in option_fields(config)} - {"config"}
    unknown = sorted(set(data) - names)
    if unknown:
        raise FewtaskError(f"--config {path} has unknown options {', '.join(unknown)}; "
                           f"see --help for this command's options")  # fmt: skip
    hints = typing.get_type_hints(config)
    return {k: Path(v) if hints[k] is Path else v for k, v in data.items()}


def with_config_file(config: type, values: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """``values`` with the config file's (``values["config"]``) in place of every option not in ``explicit``."""
    given = read_config_file(config, values["config"])
    return {**values, **{k: v for k, v in given.items() if k not in explicit}}


@dataclasses.dataclass(kw_only=True)
class StabilizerOptions(Config):
    """MAML++'s stabilizers and the zeroing trick as options (all off), shared by the commands
    that train with `training.loop` (fit, the demo, sinusoid); docs/tuning.md."""

    multi_step_loss: bool = run_option("multi_step_loss")
    meta_multi_step_loss: bool = run_option("meta_multi_step_loss")
    msl_anneal_steps: int = run_option("msl_anneal_steps")
    first_order_steps: int = run_option("first_order_steps")
    cosine_lr: bool = run_option("cosine_lr")
    min_lr: float = run_option("min_lr")
    zero_head: bool = run_option("zero_head")

    def loop_settings(self) -> dict[str, Any]:
        """The outer loop's part (`training.loop.TrainConfig` fields)."""
        return {"first_order_steps": self.first_order_steps, "cosine_lr": self.cosine_lr, "min_lr": self.min_lr}


def parse_names(text: str, allowed: tuple[str, ...], what: str = "method") -> list[str]:
    """A comma-separated choice such as ``--methods maml,pretrain``, each from ``allowed``."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in allowed]
    if bad or not names:
        raise FewtaskError(f"unknown {what} {', '.join(bad) or repr(text)}; choose from {', '.join(allowed)}")
    return names


def parse_ints(text: str, option: str) -> list[int]:
    """A comma-separated list of non-negative integers such as ``--seeds 0,1,2``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise FewtaskError(f"{option} must be non-negative integers separated by commas, got {text!r}")
    return values


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; a one-line error for anything else."""
    try:
        seeds = parse_ints(text, "--seeds")
    except FewtaskError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise FewtaskError(f"--seeds must be distinct non-negative integers separated by commas, got {text!r}; "
                           "e.g. --seeds 0,1,2")  # fmt: skip
    return seeds
