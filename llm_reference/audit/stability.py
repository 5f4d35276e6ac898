"""A run's health: how often did training have to skip a batch or roll back?

`train` logs each anomaly it handles to metrics.jsonl as an event
(`{"step", "event": "skip" | "rollback", "reason", …}`). One is a glitch; several
within a short stretch mean the run is unstable (learning rate too high, bad data,
broken hardware) and its checkpoints deserve suspicion.
"""

from __future__ import annotations

import json

from .registry import Finding, Outcome, Targets, check

WINDOW_STEPS = 1000
MAX_EVENTS = 3  # skip/rollback events allowed within any WINDOW_STEPS steps


@check("stability.anomaly-events",
       verifies=f"metrics.jsonl has at most {MAX_EVENTS} skip or rollback events "
                f"within any {WINDOW_STEPS:,} steps",
       why="repeated anomalies mean an unstable run: its loss curve and checkpoints "
           "cannot be trusted as they are",
       fix="read the events' reasons; lower train.lr or raise warmup, check the data "
           "around the logged steps, and train again from a healthy checkpoint",
       targets=(("run",),))
def anomaly_events(targets: Targets, on: str) -> Outcome:
    path = targets.run / "metrics.jsonl"
    events = []  # (step, line)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return Outcome("no metrics.jsonl", [Finding("metrics.jsonl is missing", path)])
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return Outcome("corrupt metrics.jsonl",
                           [Finding("not a JSON line", path, number)])
        if record.get("event") in ("skip", "rollback"):
            events.append((int(record["step"]), number))
    findings = []
    for i, (step, line) in enumerate(events):
        inside = [e for e in events[i:] if e[0] < step + WINDOW_STEPS]
        if len(inside) > MAX_EVENTS:
            findings.append(Finding(f"{len(inside)} skip/rollback events in steps "
                                    f"{step}-{inside[-1][0]}", path, line))
            break  # the first unhealthy stretch is enough to act on
    return Outcome(f"{len(events)} skip/rollback event(s)", findings)
