"""preference: the DPO loss and the log-probability of an answer.

Protocol: a module with two functions

    dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> loss
    sequence_logprobs(model, ids, mask) -> logprobs

`dpo_loss`: the four arguments are (B,) float tensors, the summed log-probability
of each pair's chosen and rejected answer under the policy being trained and under
the frozen reference model. The implicit rewards are r_w = beta (pi_w - ref_w)
and r_l = beta (pi_l - ref_l); the loss is the mean over pairs of
-log sigmoid(r_w - r_l), a 0-dim tensor with a gradient to the policy's
log-probabilities. While the policy equals the reference it is ln 2 for any beta.

`sequence_logprobs`: model(ids) returns (logits (B, L, V), None) like the reference
GPT; ids and mask are (B, L) (mask 1 on the answer's tokens, 0 on the prompt and
the padding). Return (B,): for each row the sum over positions p >= 1 with
mask[b, p] = 1 of ln p(ids[b, p] | ids[b, :p]). Position 0 is never scored: no
token predicts it.

Reference: `llm_reference.dpo.dpo_loss` and `dpo.sequence_logprobs`.
Command: python -m llm_reference check preference --impl my_dpo
Tolerance: float32, |Δ| <= 1e-5 + 1e-5 |expected|.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable

import torch

from ..dpo import dpo_loss, sequence_logprobs
from ..model import GPT, ModelConfig
from .runner import (
    Node,
    Suspect,
    as_tensor,
    expect_close,
    expect_equal,
    fail,
    generator,
    randn,
)

node = Node(
    id="preference",
    title="DPO",
    protocol=__doc__,
    example="my_dpo",
    reference=lambda: SimpleNamespace(
        dpo_loss=lambda *args: dpo_loss(*args)[0],
        sequence_logprobs=sequence_logprobs),
    parts=("dpo_loss", "sequence_logprobs"),
)
TOL = dict(atol=1e-5, rtol=1e-5)
CONFIG = ModelConfig(vocab_size=32, context_length=12, n_layer=1, n_head=2,
                     d_model=16)


def logps(seed: int, B: int = 4) -> torch.Tensor:
    return -20 + 5 * randn(B, seed=seed)  # summed log-probs of answers


def loss_of(impl: Callable, *args: object) -> torch.Tensor:
    out = impl(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
    return as_tensor(out, "loss")


@node.check("dpo_matches_reference", uses=["dpo_loss"], section="The DPO loss",
            hint="-logsigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l))).mean()")
def dpo_matches_reference(impl: Callable) -> None:
    pw, pl, rw, rl = logps(1), logps(2), logps(3), logps(4)
    for beta in (0.1, 0.5):
        margin = (pw - rw) - (pl - rl)
        expect_close(loss_of(impl, pw, pl, rw, rl, beta),
                     dpo_loss(pw, pl, rw, rl, beta)[0], f"loss with beta = {beta}",
                     **TOL, suspects=[
            Suspect(-torch.nn.functional.logsigmoid(margin).mean(),
                    "the loss without beta", "multiply the margin by beta"),
            Suspect(-torch.nn.functional.logsigmoid(beta * (pw - pl)).mean(),
                    "the loss without the reference model",
                    "subtract the reference's log-probabilities: the rewards are "
                    "beta (pi - ref)")])


@node.check("equal_policy_gives_log_2", uses=["dpo_loss"],
            section="$beta$ and the reference model",
            hint="at the start policy = reference, both rewards are 0 and the loss "
                 "is -log sigmoid(0) = ln 2")
def equal_policy_gives_log_2(impl: Callable) -> None:
    pw, pl = logps(5), logps(6)
    for beta in (0.05, 1.0):
        loss = loss_of(impl, pw, pl, pw, pl, beta)
        expect_equal(tuple(loss.shape), (), "loss.shape")
        expect_close(loss, torch.tensor(math.log(2)),
                     f"loss with policy = reference, beta = {beta}", **TOL)


@node.check("gradient_prefers_chosen", uses=["dpo_loss"], section="The DPO loss",
            hint="compute with torch operations: descending the loss must raise the "
                 "chosen answer's log-probability and lower the rejected one's")
def gradient_prefers_chosen(impl: Callable) -> None:
    pw, pl = logps(7).requires_grad_(), logps(8).requires_grad_()
    rw, rl = logps(7), logps(8)
    loss = impl(pw, pl, rw, rl, 0.1)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        fail("the loss carries no gradient back to the policy's log-probabilities")
    loss.backward()
    expected = torch.full((4,), -0.1 * 0.5 / 4)  # -beta sigmoid(0) / B
    expect_close(pw.grad, expected, "d loss / d policy_chosen", **TOL)
    expect_close(pl.grad, -expected, "d loss / d policy_rejected", **TOL)


@node.check("sequence_logprobs_matches_reference", uses=["sequence_logprobs"],
            section="The DPO loss",
            hint="logits at position p - 1 predict the token at p: gather "
                 "log_softmax at ids[:, 1:] and sum where mask[:, 1:] is 1")
def sequence_logprobs_matches_reference(impl: Callable) -> None:
    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    ids = torch.randint(0, 32, (3, 10), generator=generator(9))
    mask = torch.zeros(3, 10)
    mask[0, 4:] = 1  # a prompt of 4 tokens, then the answer
    mask[1, 2:7] = 1  # then 3 tokens of padding
    mask[2, 0:] = 1  # position 0 is never scored
    with torch.no_grad():
        ours = as_tensor(impl(model, ids.clone(), mask.clone()), "logprobs")
        expected = sequence_logprobs(model, ids, mask)
    expect_close(ours, expected, "summed log-probs of 3 answers", **TOL)
