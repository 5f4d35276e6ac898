"""Your token + position embeddings and RoPE, for the `embeddings` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check embeddings --impl my_model

(`python -m llm_reference check --list embeddings` prints the full protocol.)
"""

from __future__ import annotations

import torch


def embed(idx: torch.Tensor, tok_emb: torch.Tensor, pos_emb: torch.Tensor
          ) -> torch.Tensor:
    """idx (B, T) ids -> x (B, T, C): the token's row of tok_emb (V, C) plus its
    position's row of pos_emb (P, C)."""
    raise NotImplementedError("embed")


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0
         ) -> torch.Tensor:
    """Rotate x (B, H, T, D): pair i = channels (i, i + D/2) ("rotate half") turns
    by positions[t] * theta^(-2i / D)."""
    raise NotImplementedError("rope")
