"""Your FLOPs count, MFU and fp16 gradient unscaling, for the `efficiency`
checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check efficiency --impl my_efficiency

(`python -m llm_reference check --list efficiency` prints the full protocol.)
"""

from __future__ import annotations

import torch


def flops_per_token(matmul_weights: int, n_layer: int, d_model: int,
                    context_length: int) -> float:
    """Training FLOPs of one token: 6 N' + 12 L d T."""
    raise NotImplementedError("flops_per_token")


def mfu(tokens_per_second: float, flops_per_token: float, peak_flops: float
        ) -> float:
    """The fraction of the hardware's peak that the model's FLOPs use."""
    raise NotImplementedError("mfu")


def unscale_(grads: list[torch.Tensor], scale: float) -> bool:
    """Divide each gradient in place by the loss scale; return True if any holds
    an inf or NaN (the step is then skipped)."""
    raise NotImplementedError("unscale_")
