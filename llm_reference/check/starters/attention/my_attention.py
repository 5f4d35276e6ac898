"""Your causal scaled dot-product attention, for the `attention` checkpoint.

Fill in the function, then run from this folder:

    python -m llm_reference check attention --impl my_attention:attention

(`python -m llm_reference check --list attention` prints the full protocol.)
"""

from __future__ import annotations

import torch


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q (B, H, T, D), k and v (B, K, S, D) -> y (B, H, T, D): softmax(q k^T /
    sqrt(D)) v, causal, the queries being the last T of S positions; query head h
    reads key/value head h // (H / K)."""
    raise NotImplementedError("attention")
