"""finetuning: merging a LoRA adapter into its weight.

Protocol: a function

    merge_lora(weight, A, B, alpha) -> merged

weight (out, in) is the frozen base weight W, A (r, in) and B (out, r) the trained
low-rank factors, alpha the LoRA scale; merged (out, in) = W + (alpha / r) B @ A,
the weight of a plain Linear layer that computes what the base layer plus its
adapter computed: x W^T + (alpha / r) x A^T B^T.

Reference: `llm_reference.lora.merge_lora` on a `LoRALinear`.
Command: python -m llm_reference check finetuning --impl my_lora:merge_lora
Tolerance: float32, |Δ| <= 1e-5 + 1e-4 |expected|.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..lora import LoRALinear, merge_lora
from .runner import Node, Suspect, as_tensor, expect_close, randn


def reference_merge(weight: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                    alpha: float) -> torch.Tensor:
    """Wrap a Linear of this weight in LoRA with these factors, merge, unwrap."""
    out_features, in_features = weight.shape
    layer = LoRALinear(nn.Linear(in_features, out_features, bias=False),
                       rank=A.size(0), alpha=alpha)
    with torch.no_grad():
        layer.base.weight.copy_(weight)
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    merged = merge_lora(nn.Sequential(layer))  # Sequential[0] is a Linear again
    return merged[0].weight.detach()


node = Node(
    id="finetuning",
    title="Instruction SFT, LoRA",
    protocol=__doc__,
    example="my_lora:merge_lora",
    reference=lambda: reference_merge,
)


def factors(out: int = 6, inp: int = 5, r: int = 2
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return randn(out, inp, seed=1), randn(r, inp, seed=2), randn(out, r, seed=3)


def merged_by(merge: Callable, weight: torch.Tensor, A: torch.Tensor,
              B: torch.Tensor, alpha: float) -> torch.Tensor:
    return as_tensor(merge(weight.clone(), A.clone(), B.clone(), alpha), "merged")


@node.check("merge_matches_reference", section="LoRA",
            hint="merged = W + (alpha / r) * B @ A, with r = A.shape[0]")
def merge_matches_reference(merge: Callable) -> None:
    weight, A, B = factors()
    alpha = 4.0
    expect_close(merged_by(merge, weight, A, B, alpha),
                 reference_merge(weight, A, B, alpha), "merged weight", suspects=[
        Suspect(weight + B @ A, "W + B @ A, without the alpha / r scale",
                "scale the update by alpha / r"),
        Suspect(weight + alpha * B @ A, "W + alpha * B @ A (not divided by r)",
                "the scale is alpha / r, r = A.shape[0]")])


@node.check("zero_B_keeps_the_weight", section="LoRA",
            hint="B starts at zero, so a fresh adapter must leave W as it is")
def zero_B_keeps_the_weight(merge: Callable) -> None:
    weight, A, B = factors()
    expect_close(merged_by(merge, weight, A, torch.zeros_like(B), 16.0), weight,
                 "merged weight with B = 0")


@node.check("same_outputs_as_the_adapter", section="LoRA",
            hint="the merged Linear must compute x W^T + (alpha / r) x A^T B^T "
                 "for any x")
def same_outputs_as_the_adapter(merge: Callable) -> None:
    weight, A, B = factors(out=7, inp=4, r=1)  # rank 1
    layer = LoRALinear(nn.Linear(4, 7, bias=False), rank=1, alpha=2.0)
    with torch.no_grad():
        layer.base.weight.copy_(weight)
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
        x = randn(3, 4, seed=4)
        expect_close(F.linear(x, merged_by(merge, weight, A, B, 2.0)), layer(x),
                     "outputs of the merged Linear (rank 1)")
