"""benchmarks/gpu_check.sh needs a GPU to run; here it must at least parse, and
define its checks when sourced (its fp16 check was run once on a CPU by hand)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
CHECKS = ("bench_train", "trainer", "fp16", "sdpa", "torchrun_resume",
          "fsdp_compile", "generate", "bench_serve")


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_sourcing_defines_every_check_and_runs_none():
    done = subprocess.run(["bash", "-c", f"source {SCRIPT} && declare -F"],
                          capture_output=True, text=True, check=True)
    defined = {line.split()[-1] for line in done.stdout.splitlines()}
    assert set(CHECKS) <= defined
    assert "PASS" not in done.stdout and "FAIL" not in done.stdout


def test_shellcheck_finds_nothing():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    # SC2094: a check's log is both appended to and read, on purpose
    subprocess.run(["shellcheck", "-e", "SC2094", str(SCRIPT)], check=True)
