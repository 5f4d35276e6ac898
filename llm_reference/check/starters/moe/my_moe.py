"""Your router and balancing loss, for the `moe` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check moe --impl my_moe

(`python -m llm_reference check --list moe` prints the full protocol.)
"""

from __future__ import annotations

import torch


def route(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (N, E) -> (gates (N, k), experts (N, k) int64): the k experts of
    largest softmax probability, best first, and their probabilities rescaled to
    sum to 1 over the k (differentiable with respect to logits)."""
    raise NotImplementedError("route")


def balance_loss(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's E * sum_e f_e P_e: f_e the share of the N k assignments
    in `experts` that went to expert e (no gradient), P_e the mean of probs[:, e];
    a 0-dim tensor, 1 when the load is uniform."""
    raise NotImplementedError("balance_loss")
