"""mental-model: next-token probabilities, shifted targets and greedy generation.

Protocol: a module with three functions

    next_token_probs(logits) -> probs
    inputs_and_targets(ids) -> (x, y)
    greedy(model, ids, steps) -> ids

`next_token_probs`: logits (B, T, V) are the model's scores for the token after
each position; probs (B, V) is the softmax of the last position's scores, the
model's distribution over the next token (each row sums to 1).

`inputs_and_targets`: ids (B, T + 1) int64 are training windows; x (B, T) is every
window without its last token and y (B, T) without its first, so y[b, t] is the
token that follows x[b, :t + 1]: the model learns from every position at once.

`greedy`: model(idx) returns (logits (B, T, V), None) like the reference GPT;
append the most likely next token (argmax of the last position's logits) `steps`
times and return the ids (B, T + steps), the prompt included. Sample, append,
repeat: this loop is all generation is (greedy is sampling at temperature 0).

Reference: softmax over `GPT.forward`'s logits, the shift of `data.Batches`, and
`llm_reference.generate.generate` with temperature=0.
Command: python -m llm_reference check mental-model --impl my_mental_model
Tolerance: float32, |Δ| <= 1e-6 + 1e-5 |expected|; ids exactly.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable

import torch

from ..generate import generate
from ..model import GPT, ModelConfig
from .runner import (
    Node,
    Suspect,
    as_tensor,
    expect_close,
    expect_equal,
    generator,
    randn,
)


def reference_next_token_probs(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1, :].float().softmax(dim=-1)  # (B, V)


def reference_inputs_and_targets(ids: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    return ids[:, :-1], ids[:, 1:]  # (B, T), (B, T)


def reference_greedy(model: GPT, ids: torch.Tensor, steps: int) -> torch.Tensor:
    rows = [row + list(generate(model, row, steps, temperature=0))
            for row in ids.tolist()]
    return torch.tensor(rows)  # (B, T + steps)


node = Node(
    id="mental-model",
    title="How a GPT works",
    protocol=__doc__,
    example="my_mental_model",
    reference=lambda: SimpleNamespace(
        next_token_probs=reference_next_token_probs,
        inputs_and_targets=reference_inputs_and_targets, greedy=reference_greedy),
    parts=("next_token_probs", "inputs_and_targets", "greedy"),
)
TOL = dict(atol=1e-6, rtol=1e-5)
CONFIG = ModelConfig(vocab_size=40, context_length=16, n_layer=2, n_head=2,
                     d_model=32)


def tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(CONFIG).eval()


@node.check("probs_match_reference", uses=["next_token_probs"],
            section="The task: predict the next token",
            hint="softmax over the vocabulary of the LAST position: "
                 "logits[:, -1, :].softmax(-1)")
def probs_match_reference(next_token_probs: Callable) -> None:
    logits = 3 * randn(2, 5, 11, seed=1)
    expect_close(as_tensor(next_token_probs(logits.clone()), "probs"),
                 reference_next_token_probs(logits), "probs", **TOL, suspects=[
        Suspect(logits[:, 0].softmax(-1), "the softmax of the FIRST position",
                "the prediction for the next token is at the last position"),
        Suspect(logits[:, -1].softmax(0), "a softmax over the batch (dim 0)",
                "normalise over the vocabulary, the last dimension")])


@node.check("equal_scores_are_uniform", uses=["next_token_probs"],
            section="Training: make the real next token likely",
            hint="equal logits give every token 1/V: an untrained model's loss is "
                 "about ln V")
def equal_scores_are_uniform(next_token_probs: Callable) -> None:
    probs = as_tensor(next_token_probs(torch.zeros(1, 3, 50)), "probs")
    expect_close(probs, torch.full((1, 50), 1 / 50), "probs of all-zero logits",
                 **TOL)
    expect_close(-probs[0, 7].log(), torch.tensor(math.log(50)),
                 "-ln p of any token (ln V, V = 50)", **TOL)


@node.check("targets_are_shifted", uses=["inputs_and_targets"],
            section="Training: make the real next token likely",
            hint="x = ids[:, :-1], y = ids[:, 1:]: each target is the token after "
                 "its input position")
def targets_are_shifted(inputs_and_targets: Callable) -> None:
    ids = torch.randint(0, 100, (3, 9), generator=generator(2))
    x, y = inputs_and_targets(ids.clone())
    want_x, want_y = reference_inputs_and_targets(ids)
    expect_equal(as_tensor(x, "x").tolist(), want_x.tolist(), "x")
    expect_equal(as_tensor(y, "y").tolist(), want_y.tolist(), "y")


@node.check("greedy_matches_reference", uses=["greedy"],
            section="Generation: sample, append, repeat",
            hint="at each step run the model on all ids so far, take the argmax of "
                 "the last position's logits and append it")
def greedy_matches_reference(greedy: Callable) -> None:
    model = tiny_model()
    ids = torch.randint(0, CONFIG.vocab_size, (2, 4), generator=generator(3))
    with torch.no_grad():
        ours = as_tensor(greedy(model, ids.clone(), 8), "ids")
        expected = reference_greedy(model, ids, 8)
    expect_equal(tuple(ours.shape), tuple(expected.shape),
                 "shape of the ids (prompt of 4 + 8 new)")
    expect_equal(ours.tolist(), expected.tolist(), "ids")


@node.check("greedy_zero_steps", uses=["greedy"],
            section="Generation: sample, append, repeat",
            hint="steps = 0 returns the prompt unchanged")
def greedy_zero_steps(greedy: Callable) -> None:
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        out = as_tensor(greedy(tiny_model(), ids.clone(), 0), "ids")
    expect_equal(out.tolist(), ids.tolist(), "ids after 0 steps")
