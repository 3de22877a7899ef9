"""The fewtask-data CLI as a user meets it: it starts without torch or albumentations, and a
bad --out is a one-line error for every build command. (Timings: scripts/bench_cli_startup.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import toydata

HEAVY = ("torch", "albumentations", "webdataset")

PROBE = """
import sys
from fewtask_data.cli import main
sys.argv = ["fewtask-data", *sys.argv[1:]]
try:
    main()
except SystemExit as stop:
    code = stop.code
print("heavy:", sorted(m for m in {heavy!r} if m in sys.modules), "exit:", code)
"""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """fewtask-data ARGS in a fresh interpreter; its last stdout line says which heavy modules it imported."""
    code = PROBE.format(heavy=HEAVY)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def heavy_modules(done: subprocess.CompletedProcess) -> str:
    return done.stdout.strip().splitlines()[-1]


def test_importing_the_package_and_the_cli_leaves_torch_out():
    code = f"import sys, fewtask_data, fewtask_data.cli; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "data"
    toydata.build_toy(out)
    return out


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["build", "omniglot-families", "--help"],
        ["inspect", "{toy}"],
        ["verify", "{toy}"],
        ["manifests", "list"],
    ],
)
def test_help_inspect_verify_and_manifests_need_no_torch(toy, args):
    done = run_cli(*(a.format(toy=toy) for a in args))
    assert heavy_modules(done) == "heavy: [] exit: 0", done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["build", "omniglot-families", "--out", "{tmp}/o", "--split", "nope"], "--split must be one of"),
        (["build", "imagenet-families", "--imagenet-root", "{tmp}", "--out", "{tmp}/i", "--roots", "x"], "--roots 'x'"),
        (["build", "unsupervised-families", "--out", "{tmp}/u", "--images", "{tmp}", "--support", "x"], "--support must be"),
    ],
)
def test_build_argument_errors_need_no_torch(tmp_path, args, message):
    done = run_cli(*(a.format(tmp=tmp_path) for a in args))
    assert heavy_modules(done) == "heavy: [] exit: 2"
    assert done.stderr.startswith("error: ") and message in done.stderr and done.stderr.count("\n") == 1


BUILDS = [
    ["build", "omniglot-families"],
    ["build", "imagenet-families", "--imagenet-root", "."],
    ["build", "unsupervised-families", "--images", "."],
    ["build", "sinusoid-families"],
]


@pytest.mark.parametrize("command", BUILDS, ids=lambda c: c[1])
@pytest.mark.parametrize("where", ["a file", "inside a file", "/proc"])
def test_an_unwritable_out_folder_is_one_line_for_every_build(tmp_path, command, where):
    existing = tmp_path / "file"
    existing.write_text("")
    if where == "/proc" and not Path("/proc/self").exists():
        pytest.skip("no /proc on this system")
    out = {"a file": existing, "inside a file": existing / "data", "/proc": Path("/proc/fewtask-data")}[where]
    done = run_cli(*command, "--out", str(out), cwd=tmp_path)
    assert done.stderr.startswith(f"error: cannot write to output folder {out} (") and done.stderr.count("\n") == 1
    assert "choose a writable --out" in done.stderr and heavy_modules(done).endswith("exit: 2")
