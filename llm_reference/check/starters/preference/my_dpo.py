"""Your DPO loss, for the `preference` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check preference --impl my_dpo

(`python -m llm_reference check --list preference` prints the full protocol.)
"""

from __future__ import annotations

import torch


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float
             ) -> torch.Tensor:
    """Mean over pairs of -log sigmoid(beta (pi_w - ref_w) - beta (pi_l - ref_l)),
    all inputs (B,) summed answer log-probabilities; a 0-dim tensor."""
    raise NotImplementedError("dpo_loss")


def sequence_logprobs(model: torch.nn.Module, ids: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """(B,): per row, the sum of ln p(ids[p] | ids[:p]) over positions p >= 1 where
    mask is 1; model(ids) returns (logits (B, L, V), None)."""
    raise NotImplementedError("sequence_logprobs")
