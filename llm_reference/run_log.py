"""Everything a run reports as it goes, in one place.

Each record the trainer makes (a step or an event, see train.py) goes to

- `metrics.jsonl`, one JSON line, flushed at once (a killed run loses nothing
  logged); non-finite numbers become null, as JSON has no NaN;
- the trackers the config turns on (TensorBoard, W&B: see tracking.py);
- the progress display: a bar on a terminal, a line every `log_seconds` elsewhere
  (see progress.py);
- `loss.png`, redrawn at each evaluation.

Under torchrun only rank 0 reports; in the other processes a RunLog does nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .metrics_plot import plot_metrics
from .progress import Progress
from .tracking import Trackers

SHOWN = ("loss", "lr", "tokens_per_s")  # the fields the progress display shows


class RunLog:
    """The reports of one run folder, from step `step` of `total` on."""

    def __init__(self, run_dir: Path, config: Any, step: int,
                 enabled: bool = True) -> None:
        t = config.train
        self.run_dir, self.enabled = run_dir, enabled
        self.metrics_path = run_dir / "metrics.jsonl"
        self.file = open(self.metrics_path, "a", encoding="utf-8") if enabled else None
        self.trackers = Trackers(run_dir, config.to_dict(), t.tensorboard, t.wandb,
                                 enabled)
        self.progress = Progress(t.max_steps, initial=step, desc="train",
                                 every=t.log_seconds, enabled=enabled)

    def write(self, record: dict[str, Any]) -> None:
        """Report one step or event record."""
        if not self.enabled:
            return
        clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                 for k, v in record.items()}
        self.file.write(json.dumps(clean) + "\n")
        self.file.flush()
        self.trackers.log(record)
        shown = {k: record[k] for k in SHOWN if k in record and "event" not in record}
        self.progress.update(record.get("to_step", record["step"]), **shown)
        if "val_loss" in record:
            self.plot()

    def plot(self) -> None:
        if self.enabled:
            plot_metrics(self.metrics_path, self.run_dir / "loss.png")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.trackers.close()
        self.progress.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
