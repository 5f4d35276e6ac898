"""Your next-token predictor's three moves, for the `mental-model` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check mental-model --impl my_mental_model

(`python -m llm_reference check --list mental-model` prints the full protocol.)
"""

from __future__ import annotations

import torch


def next_token_probs(logits: torch.Tensor) -> torch.Tensor:
    """(B, T, V) scores -> (B, V): the softmax of the LAST position's scores, the
    model's distribution over the token that comes next."""
    raise NotImplementedError("next_token_probs")


def inputs_and_targets(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T + 1) windows -> x (B, T) and y (B, T), where y[b, t] is the token that
    follows x[b, :t + 1]."""
    raise NotImplementedError("inputs_and_targets")


def greedy(model, ids: torch.Tensor, steps: int) -> torch.Tensor:
    """Append the argmax of the last position's logits `steps` times; model(idx)
    returns (logits (B, T, V), None). Return (B, T + steps), prompt included."""
    raise NotImplementedError("greedy")
