"""objective: next-token cross-entropy.

Protocol: a function

    cross_entropy(logits, targets) -> loss

logits (B, T, V) float, targets (B, T) int64; loss is a scalar tensor (0-dim),
differentiable with respect to logits: the mean over positions of
-log softmax(logits)[target], leaving out positions whose target is -100 (the
ignore index: finetuning uses it to skip the prompt). It must stay finite for
logits in the thousands.

Reference: the loss of `llm_reference.model.GPT.forward`, `F.cross_entropy` with
ignore_index=-100.
Command: python -m llm_reference check objective --impl my_loss:cross_entropy
Tolerance: float32, |Δ| <= 1e-5 + 1e-5 |expected|.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .runner import Node, as_tensor, expect_close, expect_equal, fail, generator, randn


def reference_cross_entropy(logits: torch.Tensor, targets: torch.Tensor
                            ) -> torch.Tensor:
    """The loss line of GPT.forward."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


node = Node(
    id="objective",
    title="Next-token cross-entropy, perplexity",
    protocol=__doc__,
    example="my_loss:cross_entropy",
    reference=lambda: reference_cross_entropy,
)
TOL = dict(atol=1e-5, rtol=1e-5)


def batch(B: int = 2, T: int = 5, V: int = 11, scale: float = 1.0
          ) -> tuple[torch.Tensor, torch.Tensor]:
    logits = scale * randn(B, T, V, seed=1)
    targets = torch.randint(0, V, (B, T), generator=generator(2))
    return logits, targets


def loss_of(cross_entropy: Callable, logits: torch.Tensor,
            targets: torch.Tensor) -> torch.Tensor:
    return as_tensor(cross_entropy(logits.clone(), targets.clone()), "loss")


@node.check("matches_reference", section="Cross-entropy",
            hint="loss = mean over positions of logsumexp(logits) - "
                 "logits[target]")
def matches_reference(cross_entropy: Callable) -> None:
    logits, targets = batch()
    expect_close(loss_of(cross_entropy, logits, targets),
                 reference_cross_entropy(logits, targets), "loss", **TOL)


@node.check("returns_a_scalar", section="Cross-entropy",
            hint="average over every position: return a 0-dim tensor")
def returns_a_scalar(cross_entropy: Callable) -> None:
    loss = loss_of(cross_entropy, *batch())
    expect_equal(tuple(loss.shape), (), "loss.shape")


@node.check("uniform_is_log_vocab", section="Cross-entropy",
            hint="equal logits give every token probability 1/V: the loss is ln V")
def uniform_is_log_vocab(cross_entropy: Callable) -> None:
    _, targets = batch(V=50)
    expect_close(loss_of(cross_entropy, torch.zeros(2, 5, 50), targets),
                 torch.tensor(math.log(50)), "loss of all-zero logits (V = 50)",
                 **TOL)


@node.check("large_logits", section="Cross-entropy",
            hint="subtract the max logit before exp (log-sum-exp), or use "
                 "log_softmax: exp(1000) overflows")
def large_logits(cross_entropy: Callable) -> None:
    logits, targets = batch(scale=1000.0)
    loss = loss_of(cross_entropy, logits, targets)
    if not loss.isfinite().all():
        fail(f"loss of logits around ±1000 is {loss.flatten()[0].item()}")
    expect_close(loss, reference_cross_entropy(logits, targets),
                 "loss of logits around ±1000", **TOL)


@node.check("ignore_index", section="Cross-entropy",
            hint="leave out positions whose target is -100 and average over the "
                 "others")
def ignore_index(cross_entropy: Callable) -> None:
    logits, targets = batch()
    targets[0, :3] = -100
    targets[1, 4] = -100
    expect_close(loss_of(cross_entropy, logits, targets),
                 reference_cross_entropy(logits, targets),
                 "loss with 4 of 10 targets = -100", **TOL)


@node.check("single_position", section="Cross-entropy",
            hint="B = T = 1 is a batch like any other")
def single_position(cross_entropy: Callable) -> None:
    logits, targets = batch(B=1, T=1)
    expect_close(loss_of(cross_entropy, logits, targets),
                 reference_cross_entropy(logits, targets), "loss of one position",
                 **TOL)


@node.check("gradient", section="Cross-entropy",
            hint="compute the loss with torch operations on the logits (no .item(),"
                 " no numpy): its gradient is (softmax - one_hot(target)) / N")
def gradient(cross_entropy: Callable) -> None:
    logits, targets = batch()
    ours = logits.clone().requires_grad_()
    loss = cross_entropy(ours, targets.clone())
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        fail("the loss carries no gradient back to the logits")
    loss.backward()
    theirs = logits.clone().requires_grad_()
    reference_cross_entropy(theirs, targets).backward()
    expect_close(ours.grad, theirs.grad, "d loss / d logits", **TOL)
