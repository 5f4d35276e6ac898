"""The loss curve of a run, drawn from its metrics.jsonl into loss.png.

metrics.jsonl has one JSON object per line: a training step (`step`, `loss`, `lr`, …,
and `val_loss` when it was evaluated) or an event (`event`: skip, rollback, …). After a
rollback, steps are trained again; the curve shows the last record of each step, the
trajectory the run actually kept, and marks every event with a dotted line.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

from .atomic import atomic_open


def read_metrics(path: str | Path) -> list[dict]:
    """All complete records; a half-written last line (a killed run) is skipped."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def plot_metrics(metrics_path: str | Path, out_path: str | Path) -> None:
    """Draw train and validation loss against step; write the PNG atomically."""
    records = read_metrics(metrics_path)
    train = {r["step"]: r["loss"] for r in records if "event" not in r}  # last wins
    val = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    events = [r["step"] for r in records if "event" in r]
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(sorted(train), [train[s] for s in sorted(train)], lw=1, label="train")
    if val:
        ax.plot(sorted(val), [val[s] for s in sorted(val)], "o-", ms=3, label="val")
    for step in events:
        ax.axvline(step, color="red", ls=":", lw=1)
    if events:
        ax.plot([], [], color="red", ls=":", label="events (skip, rollback)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(out_path, "wb") as f:
        fig.savefig(f, format="png")
