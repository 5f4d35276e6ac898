"""Run the registered checks over the given targets and collect one result per run."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from .registry import CHECKS, Check, Finding, Targets

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


@dataclass
class Result:
    """One check over one target (or combination of targets)."""

    check: Check
    target: str  # e.g. "data", or "data+eval"
    paths: list[str]  # the folders or files it read; empty when skipped
    status: str  # PASS, FAIL or SKIPPED
    summary: str  # what it found, or why it was skipped
    findings: list[Finding] = field(default_factory=list)


def select(only: list[str] | None) -> list[Check]:
    """The checks to run: all, or the ids in `only` (an unknown id: UserError)."""
    if not only:
        return list(CHECKS.values())
    unknown = [i for i in only if i not in CHECKS]
    if unknown:
        raise UserError(f"--only {unknown[0]}: no such check; `python -m llm_reference "
                        "audit --list` shows the ids")
    return [CHECKS[i] for i in dict.fromkeys(only)]


def run_check(check: Check, targets: Targets) -> list[Result]:
    """Run `check` over every combination of targets that was given.

    A target that turns out to be broken (a `UserError` while reading it, such as a
    truncated shard) is a failure of the check, not of the audit.
    """
    results = []
    for combo in check.targets:
        paths = [getattr(targets, t) for t in combo]
        if any(p is None for p in paths):
            continue
        try:
            outcome = check.fn(targets, combo[0])
            status = FAIL if outcome.findings else PASS
            summary, findings = outcome.summary, outcome.findings
        except UserError as e:
            status, summary, findings = FAIL, str(e), [Finding(str(e), paths[0])]
        results.append(Result(check, "+".join(combo), [str(p) for p in paths],
                              status, summary, findings))
    if not results:
        results.append(Result(check, "", [], SKIPPED, f"needs {check.needs()}"))
    return results


def run_audit(targets: Targets, only: list[str] | None = None) -> list[Result]:
    """Every selected check over the given targets, in registry order."""
    return [r for c in select(only) for r in run_check(c, targets)]


def exit_code(results: list[Result]) -> int:
    """1 when any check failed, else 0 (skipped checks do not fail an audit)."""
    return int(any(r.status == FAIL for r in results))
