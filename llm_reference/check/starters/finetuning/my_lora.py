"""Your LoRA merge, for the `finetuning` checkpoint.

Fill in the function, then run from this folder:

    python -m llm_reference check finetuning --impl my_lora:merge_lora

(`python -m llm_reference check --list finetuning` prints the full protocol.)
"""

from __future__ import annotations

import torch


def merge_lora(weight: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
               alpha: float) -> torch.Tensor:
    """W (out, in), A (r, in), B (out, r) -> W + (alpha / r) B @ A."""
    raise NotImplementedError("merge_lora")
