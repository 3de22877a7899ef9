"""`keep_freed_memory`: applied on Linux with glibc, skipped on request."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainer.core.allocator import OPT_OUT, keep_freed_memory


def test_opt_out_keeps_glibc_defaults(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "default")
    assert keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_applied_in_a_fresh_process_and_the_cli_still_runs(tmp_path):
    # a child process, so the settings do not follow the rest of the suite
    code = "from trainer.core.allocator import keep_freed_memory as k; print(k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    if out.strip() != "True":
        pytest.skip("this C library has no mallopt (not glibc)")
    cli = [sys.executable, "-m", "trainer.cli", "--help"]
    help_out = subprocess.run(cli, capture_output=True, text=True, check=False)
    assert help_out.returncode == 0 and "fit" in help_out.stdout
