"""Your batch sampler, for the `dataset` checkpoint.

Fill in the class, then run from this folder:

    python -m llm_reference check dataset --impl my_data:Batches

(`python -m llm_reference check --list dataset` prints the full protocol.)
"""

from __future__ import annotations

import numpy as np
import torch


class Batches:
    def __init__(self, tokens: np.ndarray, batch_size: int, context_length: int,
                 seed: int):
        """tokens: a 1-D uint16 array (a memory-mapped shard). Fewer than
        context_length + 1 tokens is an error."""
        raise NotImplementedError("Batches")

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `index`, which depends only on (seed, index): x and y int64
        (batch_size, context_length), y the window of x moved one token on."""
        raise NotImplementedError("Batches.get")
