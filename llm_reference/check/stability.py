"""stability: a monitor that flags NaN/inf and loss spikes during training.

Protocol: a class

    Monitor()                               # no arguments: your defaults
    .observe(loss: float, grad_norm: float) -> anomaly or None

`observe` is called once per optimizer step with the step's loss and its gradient
norm before clipping; it returns something truthy (an object describing the
anomaly, or True) when the step must not be trusted, and None (or False) otherwise:

- a loss or gradient norm that is NaN or infinite is always an anomaly;
- a spike, a loss far above the recent losses (the reference: more than 6 standard
  deviations above an exponential moving average), is an anomaly;
- ordinary noise, and a loss that falls, even fast, are not.

Reference: `llm_reference.stability.StabilityMonitor`.
Command: python -m llm_reference check stability --impl my_monitor:Monitor
The checks feed fixed loss curves (seeded noise of ±0.02 around 3.0, a fall from 10
to 3, a jump to 6.0) and look only at which steps are flagged.
"""

from __future__ import annotations

import math
import random
from typing import Any

from ..stability import StabilityMonitor
from .runner import Node, fail

node = Node(
    id="stability",
    title="Loss spikes, NaN, grad norms, resume",
    protocol=__doc__,
    example="my_monitor:Monitor",
    reference=lambda: StabilityMonitor,
)


def noisy(n: int, level: float = 3.0, seed: int = 0) -> list[float]:
    """n losses of a plateau: level ± 0.02, uniform, seeded."""
    rng = random.Random(seed)
    return [level + rng.uniform(-0.02, 0.02) for _ in range(n)]


def flagged(monitor: Any, losses: list[float], grad_norm: float = 1.0) -> list[int]:
    """The indices of the losses that `observe` flags."""
    return [i for i, loss in enumerate(losses) if monitor.observe(loss, grad_norm)]


@node.check("nan_and_inf", section="NaN and inf",
            hint="check math.isfinite(loss) and math.isfinite(grad_norm) first, "
                 "every step")
def nan_and_inf(impl: Any) -> None:
    for what, loss, grad_norm in (("loss NaN", math.nan, 1.0),
                                  ("loss inf", math.inf, 1.0),
                                  ("grad_norm NaN", 3.0, math.nan),
                                  ("grad_norm inf", 3.0, math.inf)):
        monitor = impl()
        flagged(monitor, noisy(30))
        if not monitor.observe(loss, grad_norm):
            fail(f"a step with {what} was not flagged")


@node.check("quiet_on_noise", section="Loss spikes",
            hint="judge a loss against the recent spread of the losses (a z-score "
                 "over an EMA), with a generous threshold")
def quiet_on_noise(impl: Any) -> None:
    found = flagged(impl(), noisy(300))
    if found:
        fail(f"step {found[0]} of a flat, noisy loss (3.0 ± 0.02) was flagged")


@node.check("quiet_on_falling_loss", section="Loss spikes",
            hint="only a loss far *above* the recent mean is a spike; a falling "
                 "loss is progress")
def quiet_on_falling_loss(impl: Any) -> None:
    trend = [7.0 * math.exp(-i / 30) for i in range(300)]  # 7 -> 0
    losses = [a + b for a, b in zip(trend, noisy(300))]  # 10 -> 3, with noise
    found = flagged(impl(), losses)
    if found:
        fail(f"step {found[0]} of a loss falling from 10 to 3 was flagged "
             f"(loss {losses[found[0]]:.3f})")


@node.check("flags_a_spike", section="Loss spikes",
            hint="flag a loss many standard deviations above the recent mean")
def flags_a_spike(impl: Any) -> None:
    monitor = impl()
    flagged(monitor, noisy(100))
    if not monitor.observe(6.0, 1.0):
        fail("a loss of 6.0 after 100 steps of 3.0 ± 0.02 was not flagged")


@node.check("flags_the_next_spike_too", section="Loss spikes",
            hint="a spike must not raise the bar for the next one: keep it out "
                 "of the running statistics, or clip it before it enters them")
def flags_the_next_spike_too(impl: Any) -> None:
    monitor = impl()
    flagged(monitor, noisy(100))
    monitor.observe(6.0, 1.0)
    found = flagged(monitor, noisy(50, seed=1))
    if found:
        fail(f"step {found[0]} of the normal losses after a spike was flagged")
    if not monitor.observe(6.0, 1.0):
        fail("a second spike to 6.0, 50 steps after the first, was not flagged")
