"""Number formats on the device: what each GPU can run fast, and how we ask for it.

Three precisions train here (`train.dtype`):

- float32: every matmul in 32-bit floats. On an Ampere or newer GPU (compute
  capability 8.0+) matmuls may use TF32 tensor cores instead: inputs rounded to a
  10-bit mantissa, products summed in float32, about 8x the plain float32 rate.
  Training is as good; PyTorch leaves it off by default, so we turn it on for CUDA.
- bfloat16: autocast runs matmuls in bf16 (float32's range, 8 bits of mantissa)
  while weights, optimizer states and reductions stay float32. Tensor cores for bf16
  exist from Ampere on; older GPUs (T4, V100) only emulate it, slowly, and
  `torch.compile` then leaves it uncompiled, so we refuse it there.
- float16: the same with fp16 (5 exponent bits). Small gradients underflow to zero,
  so the loss is multiplied by a large scale before the backward pass and the
  gradients divided by it before the step (`torch.amp.GradScaler`), which also skips
  steps whose gradients overflowed. The choice for pre-Ampere GPUs.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import UserError

AMPERE = (8, 0)  # the first compute capability with bf16 and TF32 tensor cores


def check_dtype(device: torch.device, dtype: str) -> None:
    """Refuse a precision the device cannot run well: bf16 before Ampere."""
    if device.type != "cuda" or dtype != "bfloat16":
        return
    capability = torch.cuda.get_device_capability(device)
    if capability < AMPERE:
        name = torch.cuda.get_device_name(device)
        raise UserError(
            f"config train.dtype: {name} (compute capability "
            f"{capability[0]}.{capability[1]}) has no bfloat16 tensor cores; use "
            '"float16" (loss scaling) or "float32"')


def enable_tf32(device: torch.device) -> None:
    """Let float32 matmuls use TF32 tensor cores on CUDA (a no-op elsewhere)."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")


def uses_tf32(device: torch.device) -> bool:
    """Whether float32 matmuls on `device` run on TF32 tensor cores."""
    return (device.type == "cuda"
            and torch.get_float32_matmul_precision() != "highest"
            and torch.cuda.get_device_capability(device) >= AMPERE)


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """Mixed precision: matmuls in bf16/fp16, reductions and weights in fp32."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, dtype))
