"""Watching a training run for trouble: NaN/inf and loss spikes, and what to do.

Two things go wrong in long runs. A loss or gradient becomes NaN or infinite (an
overflow, a division by a zero variance); one such update poisons every weight. Or the
loss *spikes*: one unlucky batch or a too-large learning rate throws the weights far
away, and the run may or may not recover.

The monitor detects both. A spike is judged against the run's own recent history: we
keep an exponential moving average (EMA) of the loss and of its variance, and compute

    z = (loss - mean) / std

A loss more than `z_threshold` standard deviations *above* the recent mean is a spike
(a falling loss is never one). The first `warmup` steps only feed the statistics, since
early losses fall too fast to say what "normal" is. Before a loss enters the EMA it is
clipped to `mean + z_threshold * std`, so one spike cannot inflate the variance enough
to hide the next one, while a lasting shift in the loss is still followed, slowly.

Two actions are offered, chosen by the trainer's config:

- `"skip"`: throw this batch's gradients away and take no optimizer step.
- `"rollback"`: restore the last checkpoint, multiply the learning rate by
  `rollback_lr_factor` and continue from there (at most `max_rollbacks` times, then the
  run stops: something is wrong beyond one bad batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

MIN_REL_STD = 0.01  # std >= 1% of the mean loss: a flat loss is not "zero noise"


@dataclass
class Anomaly:
    """What the monitor saw at one step."""

    kind: str  # "nan" (loss or gradient not finite) or "spike"
    loss: float
    grad_norm: float
    z: float | None = None  # the spike's z-score


class StabilityMonitor:
    """EMA z-score spike detector, NaN/inf check, and the rollback bookkeeping."""

    def __init__(
        self,
        action: str = "skip",
        z_threshold: float = 6.0,
        warmup: int = 20,
        ema_beta: float = 0.99,
        max_rollbacks: int = 3,
        rollback_lr_factor: float = 0.5,
    ) -> None:
        self.action = action
        self.z_threshold = z_threshold
        self.warmup = warmup
        self.ema_beta = ema_beta
        self.max_rollbacks = max_rollbacks
        self.rollback_lr_factor = rollback_lr_factor
        self.count = 0  # losses seen so far (finite ones)
        self.mean = 0.0  # EMA of the loss
        self.var = 0.0  # EMA of the squared deviation from the mean
        self.rollbacks = 0
        self.lr_scale = 1.0  # product of rollback_lr_factor over all rollbacks

    def std(self) -> float:
        """The recent standard deviation of the loss, floored at MIN_REL_STD * mean."""
        return max(math.sqrt(self.var), MIN_REL_STD * abs(self.mean))

    def zscore(self, loss: float) -> float:
        """How many recent standard deviations `loss` lies above the recent mean."""
        return (loss - self.mean) / self.std()

    def observe(self, loss: float, grad_norm: float) -> Anomaly | None:
        """Check one step's loss and pre-clip gradient norm; update the statistics."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return Anomaly("nan", loss, grad_norm)
        z = self.zscore(loss) if self.count >= self.warmup else None
        self._update(loss)
        if z is not None and z > self.z_threshold:
            return Anomaly("spike", loss, grad_norm, z)
        return None

    def _update(self, loss: float) -> None:
        """Fold a loss into the EMAs, clipped so that a spike cannot hide the next."""
        if self.count == 0:
            self.mean = loss
        else:
            limit = self.mean + self.z_threshold * self.std()
            x = min(loss, limit) if self.count >= self.warmup else loss
            delta = x - self.mean
            self.mean += (1 - self.ema_beta) * delta
            self.var = self.ema_beta * (self.var + (1 - self.ema_beta) * delta**2)
        self.count += 1

    def can_roll_back(self) -> bool:
        """True while the bound on rollbacks has not been reached."""
        return self.rollbacks < self.max_rollbacks

    def record_rollback(self) -> None:
        """Count a rollback and lower the learning-rate multiplier."""
        self.rollbacks += 1
        self.lr_scale *= self.rollback_lr_factor

    def state_dict(self) -> dict:
        """The statistics and rollback count, for checkpoints (JSON-able)."""
        keys = ("count", "mean", "var", "rollbacks", "lr_scale")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class FaultInjector:
    """Deliberate faults, for tests and demonstrations: each fires once per process.

    At step `spike_at` the loss (and so the gradient) is multiplied by `spike_scale`;
    at step `nan_at` one gradient entry becomes NaN. Steps are 1-based, as in
    metrics.jsonl. Firing once means a step replayed after a rollback runs clean.
    """

    def __init__(
        self, spike_at: int | None, spike_scale: float, nan_at: int | None
    ) -> None:
        self.spike_at, self.spike_scale, self.nan_at = spike_at, spike_scale, nan_at
        self.fired: set[str] = set()

    def _fires(self, kind: str, step: int, at: int | None) -> bool:
        if step != at or kind in self.fired:
            return False
        self.fired.add(kind)
        return True

    def scale_loss(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        if self._fires("spike", step, self.spike_at):
            return loss * self.spike_scale
        return loss

    def poison_gradients(self, step: int, model: nn.Module) -> None:
        if self._fires("nan", step, self.nan_at):
            grad = next(p.grad for p in model.parameters() if p.grad is not None)
            grad.view(-1)[0] = float("nan")
