"""Your GRPO advantages and loss, for the `reasoning-rl` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check reasoning-rl --impl my_grpo

(`python -m llm_reference check --list reasoning-rl` prints the full protocol.)
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, scale: bool) -> torch.Tensor:
    """rewards (P, G), G completions of each of P prompts -> (P, G): each reward
    minus its row's mean, and if `scale`, divided by the row's std (unbiased)
    plus 1e-4 (Dr. GRPO: scale False, the mean only)."""
    raise NotImplementedError("group_advantages")


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """logp, old_logp, mask (B, T); advantages (B,). With ratio = exp(logp -
    old_logp): minus the mean over masked tokens of min(ratio A, clip(ratio,
    1 - clip_eps, 1 + clip_eps) A); a scalar, differentiable in logp."""
    raise NotImplementedError("grpo_loss")
