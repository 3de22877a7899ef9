"""Shared CLI plumbing: user errors become one line on stderr and exit status 2."""

from __future__ import annotations

import sys

import typer

from fewtask_data.errors import FewtaskError


def make_app(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def run(app: typer.Typer) -> None:
    """Run a typer app, turning FewtaskError into a one-line message."""
    try:
        app(standalone_mode=True)
    except FewtaskError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
