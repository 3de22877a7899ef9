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


class BuildProgress:
    """A tqdm bar for a build, opened at the first update so that input errors
    raised before any image is decoded print alone. Use as a context manager and
    pass the instance as the build's ``progress`` callback."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", desc=self.desc)
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> "BuildProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def echo_build_report(report, out, what: str = "skipped", limit: int = 10) -> None:
    """Print a build's summary and its first failures; the rest are in build_report.json."""
    typer.echo(report.summary())
    for failure in report.failed[:limit]:
        typer.echo(f"  {what}: {failure['class']}/{failure['sample']}: {failure['reason']}")
    if len(report.failed) > limit:
        typer.echo(f"  ... and {len(report.failed) - limit} more, listed in {out}/build_report.json")
