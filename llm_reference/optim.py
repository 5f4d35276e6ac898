"""AdamW with two parameter groups: weight decay on matrices, none on vectors.

Weight decay pulls weights toward zero a little every step (decoupled from the gradient,
as in AdamW). It is a regulariser for the matrices that mix features — linear layers and
embeddings. Biases and normalisation gains are vectors: decaying them only fights the
scale the model has to learn, so they go in a group with `weight_decay=0` (nanoGPT's
rule: decay a parameter iff it has at least two dimensions).

AdamW itself is PyTorch's. Its fused kernel (one kernel for all parameters) is used
where PyTorch has one (CPU, CUDA, Apple MPS); elsewhere the multi-tensor `foreach` path.
"""

from __future__ import annotations

import torch
from torch import nn

FUSED_DEVICES = ("cpu", "cuda", "mps")  # device types with a fused AdamW (torch >= 2.4)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed (>= 2-D) and a non-decayed group.

    `named_parameters()` yields a tied weight (embedding = output head) once, so it is
    neither counted twice nor updated twice.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over `param_groups(model)`, fused when the device supports it."""
    device_type = next(model.parameters()).device.type
    fused = device_type in FUSED_DEVICES
    return torch.optim.AdamW(
        param_groups(model, weight_decay),
        lr=lr,
        betas=betas,
        eps=eps,
        fused=fused,
        foreach=None if fused else True,
    )
