"""Your training-loop pieces, for the `pretraining` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check pretraining --impl my_train

(`--part lr_schedule` checks one of them; `python -m llm_reference check --list
pretraining` prints the full protocol.)
"""

from __future__ import annotations

import torch


def adamw_step(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor,
               v: torch.Tensor, step: int, lr: float, beta1: float, beta2: float,
               eps: float, weight_decay: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One AdamW update (decoupled weight decay, bias-corrected moments; step
    counts from 1): return the new (param, m, v)."""
    raise NotImplementedError("adamw_step")


def lr_schedule(step: int, lr: float, min_lr: float, warmup_steps: int,
                max_steps: int) -> float:
    """Linear warmup lr * (step + 1) / (warmup_steps + 1), then half a cosine down
    to min_lr, reached at step max_steps - 1 and kept after."""
    raise NotImplementedError("lr_schedule")


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> float:
    """Return the global L2 norm of all .grad (None skipped) before clipping; above
    max_norm, scale every gradient in place by max_norm / norm."""
    raise NotImplementedError("clip_grad_norm")


def save_checkpoint(path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    step: int) -> None:
    """Write weights, optimizer state and step into the folder `path`, without
    pickle (safetensors and JSON)."""
    raise NotImplementedError("save_checkpoint")


def load_checkpoint(path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> int:
    """Restore what save_checkpoint wrote into model and optimizer; return the
    step."""
    raise NotImplementedError("load_checkpoint")
