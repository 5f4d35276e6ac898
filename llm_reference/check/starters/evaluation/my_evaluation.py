"""Your evaluation metrics, for the `evaluation` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check evaluation --impl my_evaluation

(`python -m llm_reference check --list evaluation` prints the full protocol.)
"""

from __future__ import annotations

import torch


def perplexity(mean_loss: float) -> float:
    """e^L, L in nats per token."""
    raise NotImplementedError("perplexity")


def bits_per_byte(total_nats: float, n_bytes: int) -> float:
    """The text's information in bits divided by its UTF-8 bytes."""
    raise NotImplementedError("bits_per_byte")


def continuation_logprob(model: torch.nn.Module, context_ids: list[int],
                         continuation_ids: list[int]) -> float:
    """Sum of ln p(token | everything before it) over the continuation's tokens;
    model(idx) returns (logits (B, T, V), None)."""
    raise NotImplementedError("continuation_logprob")


def pick_choice(logprobs: list[float], choices: list[str]) -> int:
    """The index of the largest log-probability per UTF-8 byte of its choice."""
    raise NotImplementedError("pick_choice")
