"""Experiment tracking: the run's metrics in TensorBoard and Weights & Biases.

metrics.jsonl and loss.png are always written. A tracker adds dashboards that
compare runs, and both are off unless the config turns them on:

- `train.tensorboard = true` writes TensorBoard event files to RUN/tensorboard/;
  look at them with `tensorboard --logdir RUN/tensorboard` (or a folder of runs).
- `train.wandb = true` logs to Weights & Biases in offline mode: files under
  RUN/wandb/, no account and no network needed; `wandb sync RUN/wandb/offline-run-*`
  uploads them later. Set WANDB_MODE=online to log live (after `wandb login`).

Both are optional packages: `pip install 'llm-from-scratch[tracking]'`. Each record
of metrics.jsonl becomes scalars at its step: a step's `loss`, `lr`, `grad_norm`,
`tokens_per_s`, `mfu`, `val_loss`, and an event's numbers under its name
(`skip/loss`, `rollback/lr_scale`, …).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from .errors import UserError


class Trackers:
    """The trackers a run's config turns on (none when `enabled` is False: every
    process of a torchrun job but rank 0)."""

    def __init__(self, run_dir: Path, config: dict[str, Any], tensorboard: bool,
                 wandb: bool, enabled: bool = True) -> None:
        self.tensorboard = self.wandb = None
        if not enabled:
            return
        if tensorboard:
            require("tensorboard", "train.tensorboard")
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if wandb:
            require("wandb", "train.wandb")
            # imported by name: an optional package, which nothing else (nor a
            # starter repo's requirements, read from our imports) depends on
            wandb_module = importlib.import_module("wandb")
            self.wandb = wandb_module.init(
                project=os.environ.get("WANDB_PROJECT", "llm-from-scratch"),
                name=run_dir.name, dir=str(run_dir), config=config,
                mode=os.environ.get("WANDB_MODE", "offline"))

    def log(self, record: dict[str, Any]) -> None:
        """Send one metrics.jsonl record's numbers, at its step."""
        scalars = scalars_of(record)
        step = record["step"]
        if self.tensorboard is not None:
            for key, value in scalars.items():
                self.tensorboard.add_scalar(key, value, step)
        if self.wandb is not None and scalars:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scalars_of(record: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a record, an event's prefixed by its name."""
    prefix = f"{record['event']}/" if "event" in record else ""
    return {prefix + key: float(value) for key, value in record.items()
            if key != "step" and isinstance(value, (int, float))
            and not isinstance(value, bool) and value == value
            and abs(value) != float("inf")}


def require(package: str, field: str) -> None:
    """A one-line error when an optional tracker's package is not installed."""
    if importlib.util.find_spec(package) is None:
        raise UserError(f"config {field} = true needs the {package} package: pip "
                        f"install {package} (or 'llm-from-scratch[tracking]'), or "
                        f"set {field} = false")
