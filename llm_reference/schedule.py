"""Learning-rate schedules: linear warmup, then cosine decay or warmup-stable-decay.

Both schedules start with a linear warmup: AdamW's second-moment estimates are noisy for
the first few hundred steps, and a small learning rate keeps those early, badly scaled
updates from knocking the model into a bad region.

After warmup:

- **cosine** decays from `lr` to `min_lr` along half a cosine wave, reaching `min_lr`
  at the last step (GPT-2/3, Chinchilla):
  `lr_t = min_lr + 0.5 * (1 + cos(pi * progress)) * (lr - min_lr)`.
- **wsd** (warmup-stable-decay) holds `lr` constant and decays linearly to `min_lr` over
  the final `decay_frac` of the steps (MiniCPM, DeepSeek). The stable phase does not
  depend on the total length, so a run can be extended, or branched into decays of
  different lengths, without restarting.

`step` is the index of the optimizer step about to be taken: 0, 1, …, `max_steps - 1`.
"""

from __future__ import annotations

import math


def warmup_lr(step: int, lr: float, warmup_steps: int) -> float:
    """Linear ramp from lr / (warmup_steps + 1) up to lr; the first step is never 0."""
    return lr * (step + 1) / (warmup_steps + 1)


def cosine_lr(
    step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int
) -> float:
    """Linear warmup, then half a cosine from `lr` down to `min_lr` at the last step."""
    if step < warmup_steps:
        return warmup_lr(step, lr, warmup_steps)
    decay_steps = max(1, max_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def wsd_lr(
    step: int,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    max_steps: int,
    decay_frac: float,
) -> float:
    """Linear warmup, constant `lr`, then a linear decay over the last `decay_frac`."""
    if step < warmup_steps:
        return warmup_lr(step, lr, warmup_steps)
    decay_steps = max(1, round(decay_frac * max_steps))
    decay_start = max_steps - decay_steps
    if step < decay_start:
        return lr
    progress = min(1.0, (step - decay_start + 1) / decay_steps)  # (0, 1]
    return lr + progress * (min_lr - lr)


def lr_at(
    step: int,
    *,
    schedule: str,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    max_steps: int,
    decay_frac: float = 0.2,
) -> float:
    """The learning rate for optimizer step `step` under the named schedule."""
    if schedule == "cosine":
        return cosine_lr(step, lr, min_lr, warmup_steps, max_steps)
    if schedule == "wsd":
        return wsd_lr(step, lr, min_lr, warmup_steps, max_steps, decay_frac)
    raise ValueError(f"unknown schedule {schedule!r}")
