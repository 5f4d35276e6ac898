"""Your next-token cross-entropy, for the `objective` checkpoint.

Fill in the function, then run from this folder:

    python -m llm_reference check objective --impl my_loss:cross_entropy

(`python -m llm_reference check --list objective` prints the full protocol.)
"""

from __future__ import annotations

import torch


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V), targets (B, T) -> a 0-dim loss: the mean of
    -log softmax(logits)[target] over positions whose target is not -100; finite
    for logits in the thousands."""
    raise NotImplementedError("cross_entropy")
