"""Configs whose fields are also command-line options, declared once.

A field made with `option` carries its default and help text; `typer_command` turns a
config dataclass into a typer command with one option per such field (same name,
default and help), so the config, its command and the other code that builds the
config (the demo, scripts) cannot drift apart. Fields made with plain defaults are
settings without an option.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, Callable

import typer

from fewtask_data.errors import FewtaskError


def option(default: Any = dataclasses.MISSING, help: str = "", *decls: str, cli_type: type | None = None) -> Any:
    """A dataclass field that is also an option: ``default`` (none: required), ``help``,
    typer's parameter declarations (e.g. "--tasks", "-L"), and ``cli_type`` when the
    command line takes another type than the field (a Path for a str field)."""
    meta = {"help": help, "decls": decls, "cli_type": cli_type}
    return dataclasses.field(default=default, metadata=meta)


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

    def command(**values: Any) -> None:
        run(config(**{k: str(v) if isinstance(v, Path) and hints[k] is str else v for k, v in values.items()}))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = annotations
    command.__doc__ = doc
    return command


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
