{% set s = cookiecutter._scaffold %}
"""The book's steps this repo checks: `make check [NODE=…]` and `make solutions`.

    python scripts/steps.py check             # every step below: pass or fail
    python scripts/steps.py check attention   # one step, with each check's line
{% if s.exercises %}
    python scripts/steps.py solutions         # copy the reference bodies back

This repo is in exercises mode: the functions listed below raise
NotImplementedError until you write them. The reader checks that judge them run
from the reference code in solutions/ (the oracle); read it only when stuck.
{% else %}

The checks compare the functions listed below with the check's own expectations
(`python -m {{ cookiecutter.package_name }} check --list NODE` shows them).
{% endif %}
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = {{ cookiecutter.package_name | tojson }}
ORACLE = {{ s.oracle | tojson }}  # the package whose checks run
STEPS = {{ s.steps | tojson(indent=4) }}


def command(node: str) -> list[str]:
    """`python -m ORACLE check NODE --impl PACKAGE.module:name [--part …]`."""
    args = [sys.executable, "-m", ORACLE, "check", node]
    step = next((s for s in STEPS if s["node"] == node), None)
    if step is not None:
        args += ["--impl", f"{PACKAGE}.{step['impl']}"]
        for part in step["parts"]:
            args += ["--part", part]
    return args


def run(node: str, quiet: bool) -> bool:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "solutions"), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep)}
    result = subprocess.run(command(node), cwd=ROOT, env=env, text=True,
                            capture_output=quiet)
    return result.returncode == 0


def check(nodes: list[str]) -> int:
    """Check each step; one line per step, the checks' own lines for one step."""
    quiet = len(nodes) > 1
    failed = []
    for node in nodes:
        step = next((s for s in STEPS if s["node"] == node), None)
        label = f"step {step['step']} ({step['title']})" if step else node
        ok = run(node, quiet)
        print(f"{'pass' if ok else 'FAIL'}  {node}: {label}")
        if not ok:
            failed.append(node)
    if failed and quiet:
        print(f"{len(failed)} of {len(nodes)} steps fail; `make check NODE="
              f"{failed[0]}` shows each check and a hint")
    return 1 if failed else 0
{% if s.exercises %}


def solutions() -> int:
    """Copy the reference modules of every exercise back into the package (your
    versions of those files are replaced: commit them first)."""
    from_dir = ROOT / "solutions" / ORACLE
    for module in sorted({m for s in STEPS for m in s["modules"]}):
        text = (from_dir / f"{module}.py").read_text(encoding="utf-8")
        (ROOT / PACKAGE / f"{module}.py").write_text(
            text.replace(ORACLE, PACKAGE), encoding="utf-8")
        print(f"restored {PACKAGE}/{module}.py")
    return 0
{% endif %}


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        return check(argv[1:] or [s["node"] for s in STEPS])
{% if s.exercises %}
    if argv == ["solutions"]:
        return solutions()
{% endif %}
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
