"""The audit's vocabulary: a check, what it found, and the registry of all checks.

A check verifies one compliance or safety property of files on disk: a data folder
written by `prepare`, a run written by `train`, a release, a code tree or an
evaluation set. Each has a stable id (`area.property`) that CI configurations, the
book and SARIF reports name, so an id never changes meaning once published.

A check runs over *targets*. `targets` lists the combinations it can use: each
combination runs when every folder or file in it was given, so `model.no-pickle`
(`("run",), ("release",), ("code",))`) runs once per given folder, while
`dataset.decontamination` (`("data", "eval")`) needs both. A check whose targets were
not given is reported as skipped, with the option that would run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

TARGETS = ("data", "run", "release", "code", "eval")
TARGET_HELP = {  # the option that names each target, and its placeholder
    "data": "--data DIR", "run": "--run DIR", "release": "--release DIR",
    "code": "--code DIR", "eval": "--eval FILE",
}
EXAMPLE_PATHS = {  # the book's usual folders, for the commands it prints
    "data": "data/stdlib", "run": "runs/tiny", "release": "release/tiny", "code": ".",
    "eval": "eval.jsonl",
}


@dataclass(frozen=True)
class Finding:
    """One thing wrong, and where: a file (and line) when there is one."""

    message: str
    file: Path | None = None
    line: int | None = None

    def where(self) -> str:
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}: " if self.line else f"{self.file}: "


@dataclass
class Outcome:
    """What a check returns: its findings (none: a pass) and a one-line summary."""

    summary: str
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Targets:
    """What the user pointed the audit at, and the settings some checks take."""

    data: Path | None = None
    run: Path | None = None
    release: Path | None = None
    code: Path | None = None
    eval: Path | None = None
    compare_data: Path | None = None  # a second prepare of the same inputs
    ngram: int = 13  # decontamination: tokens per n-gram
    max_contaminated: float = 0.0  # decontamination: share of eval items allowed
    workers: int = 1  # processes for re-running `prepare`


CheckFn = Callable[[Targets, str], Outcome]  # (targets, the primary target's name)


@dataclass(frozen=True)
class Check:
    """One runnable check: its id, what it verifies, why, how to fix a failure."""

    id: str
    verifies: str
    why: str
    fix: str
    targets: tuple[tuple[str, ...], ...]
    fn: CheckFn

    def target_names(self) -> list[str]:
        """Every target this check can read, in order (e.g. run, release, code)."""
        return list(dict.fromkeys(t for combo in self.targets for t in combo))

    def command(self, on: list[str] | None = None) -> str:
        """The exact command that runs this check alone over the targets `on` (all
        of them by default), with the book's usual folders as paths."""
        names = on or self.target_names()
        options = " ".join(f"--{t} {EXAMPLE_PATHS[t]}" for t in names)
        return f"python -m llm_reference audit {options} --only {self.id}"

    def needs(self) -> str:
        """The options that would run it, e.g. '--run DIR, --release DIR or …'."""
        combos = [" and ".join(TARGET_HELP[t] for t in c) for c in self.targets]
        return ", ".join(combos[:-1]) + " or " + combos[-1] if len(combos) > 1 \
            else combos[0]


CHECKS: dict[str, Check] = {}  # id -> check, in the order they were registered


def check(id: str, verifies: str, why: str, fix: str,
          targets: tuple[tuple[str, ...], ...]) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated function as the check `id`."""
    def register(fn: CheckFn) -> CheckFn:
        if id in CHECKS:
            raise ValueError(f"check id {id!r} registered twice")
        assert all(t in TARGETS for combo in targets for t in combo), targets
        CHECKS[id] = Check(id, verifies, why, fix, targets, fn)
        return fn
    return register
