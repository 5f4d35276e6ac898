"""The audit's results for people (a table) and for machines (JSON, SARIF 2.1.0).

SARIF (Static Analysis Results Interchange Format, an OASIS standard) is what code
scanning services read: one `run` per tool, the tool's `rules` (our checks, by id)
and one `result` per finding, with the file and line when there is one.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .. import __version__
from .registry import CHECKS, Check, Finding
from .runner import FAIL, PASS, SKIPPED, Result

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SHOWN_FINDINGS = 5  # per row of the table; JSON and SARIF carry all of them
STYLE = {PASS: "green", FAIL: "bold red", SKIPPED: "dim"}


def counts(results: list[Result]) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in (PASS, FAIL, SKIPPED)}


def _details(result: Result) -> str:
    lines = [result.summary]
    lines += [f"{f.where()}{f.message}" for f in result.findings[:SHOWN_FINDINGS]]
    if len(result.findings) > SHOWN_FINDINGS:
        lines.append(f"… and {len(result.findings) - SHOWN_FINDINGS} more")
    return "\n".join(lines)


def table(results: list[Result], width: int | None = None) -> str:
    """A table for people: check, target, result, what was found, what to do."""
    grid = Table(show_lines=True)
    for column in ("check", "target", "result"):
        grid.add_column(column, no_wrap=True)
    grid.add_column("details", ratio=3, overflow="fold")
    grid.add_column("what to do", ratio=2, overflow="fold")
    for r in results:
        grid.add_row(r.check.id, r.target or "-",
                     f"[{STYLE[r.status]}]{r.status}[/]", _details(r),
                     r.check.fix if r.status == FAIL else "")
    n = counts(results)
    buffer = io.StringIO()
    width = width or shutil.get_terminal_size((160, 24)).columns  # $COLUMNS first
    console = Console(file=buffer, width=width, no_color=True, highlight=False)
    console.print(grid)
    console.print(f"{n[PASS]} passed, {n[FAIL]} failed, {n[SKIPPED]} skipped")
    return buffer.getvalue()


def _finding_dict(f: Finding) -> dict:
    return {"message": f.message, "file": None if f.file is None else str(f.file),
            "line": f.line}


def to_json(results: list[Result]) -> str:
    return json.dumps({
        "format": "llm-reference-audit/1",
        "summary": counts(results),
        "results": [{"check": r.check.id, "target": r.target, "paths": r.paths,
                     "status": r.status, "summary": r.summary,
                     "findings": [_finding_dict(f) for f in r.findings],
                     "fix": r.check.fix} for r in results],
    }, indent=2) + "\n"


def _uri(path: Path) -> str:
    """A path relative to the current folder when it is inside it, else file://."""
    absolute = path.resolve()
    try:
        return absolute.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return absolute.as_uri()


def _rule(check: Check) -> dict:
    return {"id": check.id, "name": check.id,
            "shortDescription": {"text": check.verifies},
            "fullDescription": {"text": check.why},
            "help": {"text": f"{check.fix}. Run alone: {check.command()}"},
            "defaultConfiguration": {"level": "error"}}


def _location(finding: Finding, result: Result) -> dict:
    file = finding.file if finding.file is not None else Path(result.paths[0])
    physical = {"artifactLocation": {"uri": _uri(file)}}
    if finding.line:
        physical["region"] = {"startLine": finding.line}
    return {"physicalLocation": physical}


def to_sarif(results: list[Result]) -> str:
    """SARIF 2.1.0: every check as a rule, every finding of a failure as an error."""
    ids = list(CHECKS)
    sarif_results = [{
        "ruleId": r.check.id, "ruleIndex": ids.index(r.check.id), "level": "error",
        "message": {"text": f"{f.message} ({r.check.id}: {r.check.verifies})"},
        "locations": [_location(f, r)],
    } for r in results if r.status == FAIL for f in r.findings]
    return json.dumps({
        "$schema": SARIF_SCHEMA, "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "llm-reference-audit", "version": __version__,
                "rules": [_rule(c) for c in CHECKS.values()]}},
            "invocations": [{"executionSuccessful": True}],
            "results": sarif_results,
        }],
    }, indent=2) + "\n"


def describe(checks: list[Check]) -> str:
    """`audit --list`: each check's id, what it verifies, why, how to fix it, how
    to run it."""
    blocks = [f"{c.id}\n  verifies: {c.verifies}\n  why:      {c.why}\n"
              f"  fix:      {c.fix}\n  needs:    {c.needs()}\n  run:      {c.command()}"
              for c in checks]
    return "\n\n".join(blocks) + "\n"


FORMATS = {"table": table, "json": to_json, "sarif": to_sarif}
