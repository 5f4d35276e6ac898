"""moe: top-k routing and the load-balancing loss of a mixture of experts.

Protocol: a module (or file) with two functions

    route(logits, k) -> (gates, experts)
    balance_loss(probs, experts) -> loss

route: logits (N, E) float, the router's scores of E experts for N tokens; k the
experts per token. experts (N, k) int64: the k experts of largest softmax
probability, best first; gates (N, k) float: their probabilities rescaled to sum
to 1 over the k (Mixtral), differentiable with respect to logits.
balance_loss: probs (N, E), the router's softmax probabilities; experts (N, k) as
route returns them. The loss is the Switch Transformer's E * sum_e f_e P_e, with
f_e the fraction of the N k assignments that went to expert e (a count, no
gradient) and P_e the mean of probs[:, e]; a 0-dim tensor, differentiable with
respect to probs, 1 when the load is uniform.

Reference: `llm_reference.moe.route` (softmax gate, renormalised) and
`llm_reference.moe.balance_loss`.
Command: python -m llm_reference check moe --impl my_moe
Tolerance: float32, |Δ| <= 1e-6 + 1e-5 |expected|.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import torch

from .. import moe
from .runner import Node, Suspect, as_tensor, expect_close, expect_equal, fail, randn


def reference_route(logits: torch.Tensor, k: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    gates, experts, _ = moe.route(logits, k)
    return gates, experts


node = Node(
    id="moe",
    title="Mixture of experts",
    protocol=__doc__,
    example="my_moe",
    reference=lambda: SimpleNamespace(route=reference_route,
                                      balance_loss=moe.balance_loss),
    parts=("route", "balance_loss"),
)
TOL = dict(atol=1e-6, rtol=1e-5)


def call_route(route: Callable, logits: torch.Tensor, k: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    out = route(logits, k)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail(f"route returned {type(out).__name__}, expected (gates, experts)")
    return out[0], as_tensor(out[1], "experts")


# ---------------------------------------------------------------------- routing


@node.check("route_matches_reference", uses=["route"], section="Routing",
            hint="experts = the top-k of softmax(logits) per row, best first; gates "
                 "= their probabilities divided by their sum")
def route_matches_reference(route: Callable) -> None:
    logits = randn(7, 6, seed=1)
    gates, experts = call_route(route, logits.clone(), 2)
    want_gates, want_experts = reference_route(logits, 2)
    expect_equal(experts.tolist(), want_experts.tolist(), "experts")
    raw = torch.softmax(logits, -1).gather(-1, want_experts)
    expect_close(gates, want_gates, "gates", **TOL, suspects=[
        Suspect(raw, "the k probabilities without renormalisation",
                "divide the k chosen probabilities by their sum")])


@node.check("top_1_gate_is_one", uses=["route"], section="Routing",
            hint="with k = 1 the one chosen gate, renormalised, is exactly 1")
def top_1_gate_is_one(route: Callable) -> None:
    gates, experts = call_route(route, randn(5, 4, seed=2), 1)
    expect_equal(tuple(experts.shape), (5, 1), "experts.shape for k = 1")
    expect_close(gates, torch.ones(5, 1), "gates for k = 1", **TOL)


@node.check("route_gradient", uses=["route"], section="Routing",
            hint="compute the gates with torch operations on the logits (softmax, "
                 "gather or indexing), not from .tolist() or numpy")
def route_gradient(route: Callable) -> None:
    logits = randn(6, 5, seed=3)
    weights = randn(6, 3, seed=4)
    mine = logits.clone().requires_grad_()
    gates, _ = call_route(route, mine, 3)
    if not isinstance(gates, torch.Tensor) or not gates.requires_grad:
        fail("gates carry no gradient to the logits")
    (gates * weights).sum().backward()
    ref = logits.clone().requires_grad_()
    (reference_route(ref, 3)[0] * weights).sum().backward()
    expect_close(mine.grad, ref.grad, "d(gates . w)/d logits", **TOL)


# ------------------------------------------------------------------ load balance


def probs_and_experts(N: int = 12, E: int = 4, k: int = 2
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    logits = randn(N, E, seed=5)
    return torch.softmax(logits, -1), reference_route(logits, k)[1]


@node.check("balance_matches_reference", uses=["balance_loss"],
            section="Load balancing",
            hint="E * sum over experts of (assignments to e / (N k)) * mean prob of e")
def balance_matches_reference(balance_loss: Callable) -> None:
    probs, experts = probs_and_experts()
    want = moe.balance_loss(probs, experts)
    N, k = experts.shape
    E = probs.size(1)
    expect_close(as_tensor(balance_loss(probs.clone(), experts.clone()), "loss"),
                 want, "balance loss", **TOL, suspects=[
                     Suspect(want * k, "the loss with f_e counted per token, not "
                             "per assignment (HF Mixtral's, k times ours)",
                             "divide the counts by N k, not N"),
                     Suspect(want / E, "the loss without the factor E",
                             "multiply by the number of experts, so that a uniform "
                             "load gives 1")])


@node.check("uniform_load_is_one", uses=["balance_loss"], section="Load balancing",
            hint="uniform probabilities and equal counts give f_e = P_e = 1/E: "
                 "E * E * (1/E)^2 = 1")
def uniform_load_is_one(balance_loss: Callable) -> None:
    N, E, k = 8, 4, 2
    experts = (torch.arange(N * k) % E).view(N, k)
    loss = as_tensor(balance_loss(torch.full((N, E), 1 / E), experts), "loss")
    expect_equal(tuple(loss.shape), (), "loss.shape")
    expect_close(loss, torch.tensor(1.0), "loss of a uniform load", **TOL)


@node.check("balance_gradient", uses=["balance_loss"], section="Load balancing",
            hint="the counts f_e are constants: the gradient flows through the mean "
                 "probabilities P_e only")
def balance_gradient(balance_loss: Callable) -> None:
    logits = randn(12, 4, seed=5)
    experts = reference_route(logits, 2)[1]
    mine = logits.clone().requires_grad_()
    loss = balance_loss(torch.softmax(mine, -1), experts.clone())
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        fail("the loss carries no gradient to probs")
    loss.backward()
    ref = logits.clone().requires_grad_()
    moe.balance_loss(torch.softmax(ref, -1), experts).backward()
    expect_close(mine.grad, ref.grad, "d loss / d router logits", **TOL)
