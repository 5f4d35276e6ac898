"""evaluation: perplexity, bits per byte, and multiple choice by likelihood.

Protocol: a module with four functions

    perplexity(mean_loss) -> float
    bits_per_byte(total_nats, n_bytes) -> float
    continuation_logprob(model, context_ids, continuation_ids) -> float
    pick_choice(logprobs, choices) -> int

`perplexity`: e^L of a mean loss L in nats per token.

`bits_per_byte`: the total information of a text, total_nats (the sum of the
per-token losses, L x N_tokens) converted to bits, divided by the text's number
of UTF-8 bytes: total_nats / (n_bytes ln 2). Unlike the loss, it compares models
with different tokenizers.

`continuation_logprob`: model(idx) returns (logits (B, T, V), None) like the
reference GPT; context_ids and continuation_ids are lists of ints (together at
most the model's context length). Return the sum over the continuation's tokens
of ln p(token | context and the continuation's tokens before it), a Python float:
how a base model is asked a multiple-choice question, with no generation at all.

`pick_choice`: logprobs[i] is continuation_logprob of the answer choices[i] (a
str); return the index of the best answer per UTF-8 byte, the largest
logprobs[i] / len(choices[i].encode("utf-8")) (lm-evaluation-harness's acc_norm;
the first one on a tie). A raw sum favours short answers.

Reference: `llm_reference.evaluate.language_model_metrics`,
`evaluate.continuation_logprob` (on a tokenizer of bytes) and
`evaluate.cloze_accuracy`.
Command: python -m llm_reference check evaluation --impl my_evaluation
Tolerance: 1e-9 relative for the formulas; the log-probabilities |Δ| <= 1e-4 +
1e-5 |expected| (float32 logits).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable, Sequence

import torch

from ..evaluate import continuation_logprob
from ..model import GPT, ModelConfig
from .runner import Node, Suspect, as_float64, expect_close, expect_equal


class ByteTokenizer:
    """Token i is byte i: enough for evaluate.continuation_logprob's strings."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def reference_continuation_logprob(model: GPT, context_ids: list[int],
                                   continuation_ids: list[int]) -> float:
    """evaluate.continuation_logprob, with the ids as the text of a byte tokenizer."""
    context, continuation = bytes(context_ids).decode(), bytes(continuation_ids)
    return continuation_logprob(model, ByteTokenizer(), context,
                                [continuation.decode()], torch.device("cpu"))[0]


def reference_pick_choice(logprobs: Sequence[float], choices: Sequence[str]) -> int:
    """The choice cloze_accuracy picks: the most likely per byte."""
    scores = [lp / len(c.encode("utf-8")) for lp, c in zip(logprobs, choices)]
    return max(range(len(scores)), key=scores.__getitem__)


node = Node(
    id="evaluation",
    title="Held-out loss, perplexity, bits/byte, evals",
    protocol=__doc__,
    example="my_evaluation",
    reference=lambda: SimpleNamespace(
        perplexity=math.exp,
        bits_per_byte=lambda total_nats, n_bytes: total_nats / (n_bytes * math.log(2)),
        continuation_logprob=reference_continuation_logprob,
        pick_choice=reference_pick_choice),
    parts=("perplexity", "bits_per_byte", "continuation_logprob", "pick_choice"),
)
TOL = dict(atol=0.0, rtol=1e-9)
CONFIG = ModelConfig(vocab_size=256, context_length=32, n_layer=1, n_head=2,
                     d_model=16)




@node.check("perplexity_is_exp_loss", uses=["perplexity"],
            section="Loss, perplexity and bits per byte",
            hint="perplexity = e^loss (math.exp), the loss in nats")
def perplexity_is_exp_loss(perplexity: Callable) -> None:
    for loss in (0.0, 2.21, math.log(50304)):
        expect_close(as_float64(perplexity(loss), "perplexity"),
                     torch.tensor(math.exp(loss), dtype=torch.float64),
                     f"perplexity({loss:.4g})", **TOL, suspects=[
            Suspect(torch.tensor(2.0 ** loss, dtype=torch.float64), "2^loss",
                    "the loss is in nats: use e, not 2")])


@node.check("bits_per_byte_matches_reference", uses=["bits_per_byte"],
            section="Loss, perplexity and bits per byte",
            hint="bits/byte = total nats / (bytes x ln 2): nats to bits, then per "
                 "byte, not per token")
def bits_per_byte_matches_reference(bits_per_byte: Callable) -> None:
    for nats, n_bytes in ((2.5 * 1000, 3700), (math.log(2) * 8 * 10, 10)):
        expect_close(as_float64(bits_per_byte(nats, n_bytes), "bits_per_byte"),
                     torch.tensor(nats / (n_bytes * math.log(2)), dtype=torch.float64),
                     f"bits_per_byte({nats:.6g}, {n_bytes})", **TOL, suspects=[
            Suspect(torch.tensor(nats / n_bytes, dtype=torch.float64),
                    "nats per byte", "divide by ln 2 to get bits")])


def tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(CONFIG).eval()


@node.check("continuation_logprob_matches_reference", uses=["continuation_logprob"],
            section="A cloze benchmark",
            hint="run the model on context + continuation; the logits at position "
                 "p - 1 score the token at p: sum log_softmax over the continuation")
def continuation_logprob_matches_reference(impl: Callable) -> None:
    model = tiny_model()
    context = list(b"def add(a, b):\n    return")
    for continuation in (list(b" a + b"), list(b" x"), list(b"\n")):
        with torch.no_grad():
            ours = as_float64(impl(model, list(context), list(continuation)),
                       "continuation_logprob")
        expected = reference_continuation_logprob(model, context, continuation)
        expect_close(ours, torch.tensor(expected, dtype=torch.float64),
                     f"log p({bytes(continuation).decode()!r} | context)",
                     atol=1e-4, rtol=1e-5)


@node.check("pick_choice_per_byte", uses=["pick_choice"],
            section="A cloze benchmark",
            hint="divide each log-probability by its choice's length in UTF-8 bytes "
                 "before taking the argmax")
def pick_choice_per_byte(pick_choice: Callable) -> None:
    cases = [([-4.0, -9.0, -6.0], ["len", "isinstance", "max"]),  # per byte: 1
             ([-2.0, -3.0], ["é", "ab"]),  # "é" is 2 bytes: -1.0 vs -1.5
             ([-3.0, -3.0], ["abc", "xyz"])]  # a tie: the first
    for logprobs, choices in cases:
        expect_equal(int(pick_choice(list(logprobs), list(choices))),
                     reference_pick_choice(logprobs, choices),
                     f"pick_choice({logprobs}, {choices})")
