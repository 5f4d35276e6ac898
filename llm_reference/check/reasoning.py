"""reasoning-rl: GRPO's group advantages and its clipped, masked loss.

Protocol: a module (or any object) with two functions

    group_advantages(rewards, scale) -> advantages
    grpo_loss(logp, old_logp, advantages, mask, clip_eps) -> loss

`group_advantages`: rewards (P, G) hold the scores of G completions of each of
P prompts. Return (P, G): each reward minus the mean of its row (its group), and,
if `scale` is True, divided by the row's standard deviation (unbiased, as
`torch.std`) plus 1e-4; with `scale` False (Dr. GRPO) only the mean is taken off.

`grpo_loss`: logp and old_logp (B, T) are the log-probabilities of the sampled
tokens under the policy being trained and under the policy that sampled them;
advantages (B,) one per completion; mask (B, T) is 1 on completion tokens and 0
on the prompt and the padding. With ratio = exp(logp - old_logp), the per-token
objective is min(ratio A, clip(ratio, 1 - clip_eps, 1 + clip_eps) A); return the
loss, a scalar: minus its sum over the masked tokens divided by their number.
It must be differentiable in logp (its gradient trains the policy).

Reference: `llm_reference.grpo.group_advantages` and `llm_reference.grpo.grpo_loss`
(with kl_beta = 0; its KL term is checked in the chapter's tests).
Command: python -m llm_reference check reasoning-rl --impl my_grpo
Tolerance: float32, |Δ| <= 1e-6 + 1e-5 |expected|.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import torch

from ..grpo import group_advantages as reference_advantages
from ..grpo import grpo_loss
from .runner import Node, Suspect, as_tensor, expect_close, fail, randn


def reference_loss(logp: torch.Tensor, old_logp: torch.Tensor,
                   advantages: torch.Tensor, mask: torch.Tensor,
                   clip_eps: float) -> torch.Tensor:
    """The reference's loss without a KL term, over all masked tokens."""
    loss, _ = grpo_loss(logp, old_logp, None, advantages, mask, clip_eps,
                        kl_beta=0.0, n_tokens=int(mask.sum()))
    return loss


node = Node(
    id="reasoning-rl",
    title="RL from verifiable rewards (GRPO)",
    protocol=__doc__,
    example="my_grpo",
    reference=lambda: SimpleNamespace(group_advantages=reference_advantages,
                                      grpo_loss=reference_loss),
    parts=("group_advantages", "grpo_loss"),
)
TOL = dict(atol=1e-6, rtol=1e-5)


def rewards() -> torch.Tensor:
    """3 groups of 4: mixed, one right answer, all the same (no signal)."""
    return torch.tensor([[1.0, 0.0, 1.1, 0.1], [0.0, 0.0, 1.0, 0.0],
                         [0.1, 0.1, 0.1, 0.1]])


def batch() -> tuple[torch.Tensor, ...]:
    """logp, old_logp (4, 5) a step apart, advantages (4,), a ragged mask."""
    old = -randn(4, 5, seed=1).abs()  # log-probs are <= 0
    logp = old + 0.5 * randn(4, 5, seed=2)  # ratios well outside [0.8, 1.2] too
    advantages = torch.tensor([1.5, -0.5, -1.0, 0.25])
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1], [0, 0, 0, 1, 0],
                         [0, 0, 1, 1, 0]], dtype=torch.float32)
    return logp, old, advantages, mask


@node.check("advantages_match_reference", uses=["group_advantages"],
            section="Groups instead of a value model",
            hint="A = (r - mean of its group) / (std of its group + 1e-4), along "
                 "dim=1, with the unbiased std")
def advantages_match_reference(advantages: Callable) -> None:
    r = rewards()
    got = as_tensor(advantages(r.clone(), True), "advantages")
    centred = r - r.mean(dim=1, keepdim=True)
    expect_close(got, reference_advantages(r, True), "advantages (scale=True)",
                 suspects=[
        Suspect((r - r.mean()) / (r.std() + 1e-4), "normalised over the whole batch",
                "take the mean and std of each row (group), dim=1"),
        Suspect(centred / (r.std(dim=1, unbiased=False, keepdim=True) + 1e-4),
                "divided by the biased std", "torch.std is unbiased (n - 1)")],
        **TOL)


@node.check("dr_grpo_only_centres", uses=["group_advantages"],
            section="Groups instead of a value model",
            hint="with scale=False only the group mean is subtracted")
def dr_grpo_only_centres(advantages: Callable) -> None:
    r = rewards()
    expect_close(as_tensor(advantages(r.clone(), False), "advantages"),
                 reference_advantages(r, False), "advantages (scale=False)", **TOL)


@node.check("uniform_group_teaches_nothing", uses=["group_advantages"],
            section="Groups instead of a value model",
            hint="a group whose rewards are all equal has std 0: the 1e-4 keeps the "
                 "division finite and every advantage must be exactly 0")
def uniform_group_teaches_nothing(advantages: Callable) -> None:
    got = as_tensor(advantages(torch.full((2, 4), 0.7), True), "advantages")
    if not torch.isfinite(got).all() or got.abs().max() > 1e-6:
        fail(f"a group of equal rewards got advantages {got[0].tolist()}, expected "
             "zeros")


@node.check("loss_matches_reference", uses=["grpo_loss"],
            section="The clipped objective",
            hint="-(min(ratio A, clip(ratio, 1 - eps, 1 + eps) A) * mask).sum() / "
                 "mask.sum(), ratio = exp(logp - old_logp)")
def loss_matches_reference(loss_fn: Callable) -> None:
    logp, old, adv, mask = batch()
    ratio = torch.exp(logp - old)
    a = adv.unsqueeze(1)
    unclipped = -(ratio * a * mask).sum() / mask.sum()
    everywhere = torch.min(ratio * a, ratio.clamp(0.8, 1.2) * a)
    expect_close(as_tensor(loss_fn(logp, old, adv, mask, 0.2), "loss"),
                 reference_loss(logp, old, adv, mask, 0.2), "loss", suspects=[
        Suspect(unclipped, "the unclipped surrogate", "clip the ratio to "
                "[1 - eps, 1 + eps] and take the min with the unclipped term"),
        Suspect(-everywhere.mean(), "the mean over every token, prompt and "
                "padding too", "multiply by the mask and divide by mask.sum()"),
        Suspect(-(everywhere * mask).sum(1).div(mask.sum(1)).mean(),
                "a mean per completion, then over completions",
                "every completion token weighs the same: one sum over the batch "
                "divided by the number of masked tokens"),
        Suspect((everywhere * mask).sum() / mask.sum(), "the objective, not the "
                "loss", "the loss to minimise is minus the objective")], **TOL)


@node.check("gradient_is_the_policy_gradient", uses=["grpo_loss"],
            section="The clipped objective",
            hint="at ratio 1 the gradient of the loss in logp is -A * mask / "
                 "mask.sum(): the clip must not cut it off")
def gradient_is_the_policy_gradient(loss_fn: Callable) -> None:
    _, old, adv, mask = batch()
    logp = old.clone().requires_grad_(True)  # one update per batch: ratio 1
    loss = loss_fn(logp, old, adv, mask, 0.2)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        fail("the loss does not depend on logp differentiably (no grad_fn)")
    loss.backward()
    expected = -adv.unsqueeze(1) * mask / mask.sum()
    expect_close(logp.grad, expected, "d loss / d logp at ratio 1", **TOL)


@node.check("masked_tokens_do_not_count", uses=["grpo_loss"],
            section="The clipped objective",
            hint="prompt and padding tokens must get no gradient and must not "
                 "change the loss: multiply by the mask before summing")
def masked_tokens_do_not_count(loss_fn: Callable) -> None:
    logp, old, adv, mask = batch()
    changed = torch.where(mask.bool(), logp, logp - 3.0)  # only masked-out tokens
    first = as_tensor(loss_fn(logp, old, adv, mask, 0.2), "loss")
    second = as_tensor(loss_fn(changed, old, adv, mask, 0.2), "loss")
    expect_close(second, first, "loss after changing only prompt/padding tokens",
                 **TOL)
