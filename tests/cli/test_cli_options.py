"""Every command of both CLIs keeps its options: names, defaults, required-ness, flags and help.

``cli_options.json`` was generated from the code before the issue-10 restructure; a change
to any option shows up here as a diff. After a deliberate change, regenerate it with
``python tests/cli/test_cli_options.py --update`` and commit it with the change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("cli_options.json")


def _plain(value):
    """A default as JSON: paths and tuples become strings and lists."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _type_name(param) -> str:
    annotation = param.type_descriptor.annotation
    return getattr(annotation, "__name__", str(annotation)) if not hasattr(annotation, "__args__") else str(annotation)


def _command(cmd) -> dict:
    params = []
    for p in cmd.params:
        params.append(
            {
                "name": p.name,
                "kind": p.param_type_name,
                "opts": list(p.opts) + list(p.secondary_opts),
                "default": _plain(p.default),
                "required": bool(p.required),
                "multiple": bool(p.multiple),
                "flag": bool(getattr(p, "is_flag", False)),
                "type": _type_name(p),
                "min": getattr(p, "min", None),
                "max": getattr(p, "max", None),
                "help": getattr(p, "help", None),
            }
        )
    return {"help": cmd.help, "params": params}


def option_sets() -> dict:
    """{"fewtask-data build omniglot-families": {help, params}, ...} for both CLIs."""
    import typer

    from fewtask_data.cli import app as data_app
    from trainer.cli import app as train_app

    out: dict = {}

    def walk(cmd, path: str) -> None:
        sub = getattr(cmd, "commands", None)
        if sub is None:
            out[path] = _command(cmd)
            return
        for name in sorted(sub):
            walk(sub[name], f"{path} {name}")

    walk(typer.main.get_command(data_app), "fewtask-data")
    walk(typer.main.get_command(train_app), "fewtask-train")
    return out


def test_every_command_keeps_its_options():
    want = json.loads(SNAPSHOT.read_text())
    got = json.loads(json.dumps(option_sets()))
    assert sorted(got) == sorted(want), "the set of commands changed"
    for command in want:
        assert got[command] == want[command], f"{command}: options or help changed"


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        raise SystemExit("usage: python tests/cli/test_cli_options.py --update   (rewrites cli_options.json)")
    SNAPSHOT.write_text(json.dumps(option_sets(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
