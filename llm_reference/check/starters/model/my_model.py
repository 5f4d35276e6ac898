"""Your transformer block and GPT, for the `model` checkpoint.

Fill in both classes, then run from this folder:

    python -m llm_reference check model --impl my_model

Name the weights as the protocol says: the checks load the reference's into yours
(`python -m llm_reference check --list model` prints it). The Llama-style recipe is
optional: raise NotImplementedError for it and its checks are skipped.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, config: dict):
        """A pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x))."""
        super().__init__()
        raise NotImplementedError("Block")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        raise NotImplementedError("Block.forward")


class GPT(nn.Module):
    def __init__(self, config: dict):
        """Embeddings, config["n_layer"] blocks, a final norm and the output head."""
        super().__init__()
        raise NotImplementedError("GPT")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        raise NotImplementedError("GPT.forward")
