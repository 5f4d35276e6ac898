"""The training loss without the (B, T, V) logits: cross-entropy chunk by chunk.

The output head turns each position's final hidden state (C numbers) into V logits.
A GPT-2 step of 16 x 1024 positions over a 50,304-token vocabulary makes 824M
logits: 1.6 GB in bfloat16, and eager cross-entropy under autocast keeps several
copies for the backward pass (the float32 upcast, the log-softmax, later their
gradients), about 14 bytes per logit, 11 GB, far more than GPT-2 small itself.

None of it has to exist at once. The gradient of the mean cross-entropy with respect
to the logits z of one position is

    dL/dz = (softmax(z) - onehot(target)) / N        (N: positions that count)

so a chunk of positions can go through the head, give its part of the loss and its
gradients with respect to the hidden states (dz @ W) and to the head's weight
(dz^T @ x), and be dropped before the next chunk is computed. The backward pass then
only scales those stored gradients by the incoming one (1 for a plain `.backward()`,
the loss scale under float16). What stays alive from the forward to the backward is
one gradient of the hidden states (the size of the hidden states that the head's
backward would keep anyway) and one float32 gradient of the head's weight, V x C; no
logit outlives its chunk. Unlike recomputing each chunk in the backward pass (what
activation checkpointing would do), no FLOP is spent twice.

Targets equal to `IGNORE_INDEX` (-100) do not count, as in `F.cross_entropy`: a
finetuning run masks its prompts that way.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
CHUNK_LOGITS = 2**25  # logits per chunk (32M: 128 MiB in float32)


def chunked_cross_entropy(x: torch.Tensor, weight: torch.Tensor,
                          targets: torch.Tensor,
                          chunk_logits: int = CHUNK_LOGITS) -> torch.Tensor:
    """Mean cross-entropy of the logits x @ weight^T against targets, by chunks.

    x is (N, C) hidden states, weight the head's (V, C) matrix, targets (N,) token
    ids; equal to `F.cross_entropy(x @ weight.T, targets, ignore_index=-100)`, with
    at most `chunk_logits` logits (a whole number of rows) in memory at a time.
    """
    rows = max(1, chunk_logits // weight.size(0))
    return _ChunkedCrossEntropy.apply(x, weight, targets, rows)


class _ChunkedCrossEntropy(torch.autograd.Function):
    """The loss and its gradients in one pass over the chunks (see the module doc)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor,
                targets: torch.Tensor, rows: int) -> torch.Tensor:
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dtype = matmul_dtype(x, weight)  # bf16 / fp16 under autocast
        w = weight.to(dtype)  # (V, C)
        count = (targets != IGNORE_INDEX).sum()  # positions that count
        total = torch.zeros((), device=x.device, dtype=torch.float32)
        grad_x = torch.empty_like(x) if need_x else None  # (N, C)
        grad_w = (torch.zeros_like(weight, dtype=torch.float32)  # (V, C)
                  if need_w else None)
        for start in range(0, x.size(0), rows):
            xs = x[start:start + rows].to(dtype)  # (n, C)
            ts = targets[start:start + rows]  # (n,)
            logits = (xs @ w.t()).float()  # (n, V): the softmax in float32
            total += F.cross_entropy(logits, ts, ignore_index=IGNORE_INDEX,
                                     reduction="sum")
            if need_x or need_w:
                dz = softmax_minus_onehot_(logits, ts).to(dtype)  # (n, V)
                if need_x:
                    grad_x[start:start + rows] = dz @ w  # (n, C)
                if need_w:
                    grad_w += dz.t() @ xs  # (V, C)
        # N = 0 gives nan, as F.cross_entropy does when every target is ignored
        ctx.save_for_backward(
            None if grad_x is None else grad_x / count,
            None if grad_w is None else (grad_w / count).to(weight.dtype))
        return total / count

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_x, grad_w = ctx.saved_tensors
        return (None if grad_x is None else grad_x * grad,
                None if grad_w is None else grad_w * grad, None, None)


def softmax_minus_onehot_(logits: torch.Tensor, targets: torch.Tensor
                          ) -> torch.Tensor:
    """dL/dz of the summed cross-entropy, in place of the logits (n, V): each row's
    softmax minus 1 at its target, and zero on rows whose target is ignored."""
    logits -= logits.logsumexp(dim=-1, keepdim=True)
    probs = logits.exp_()  # (n, V)
    keep = targets != IGNORE_INDEX  # (n,)
    probs.scatter_add_(1, targets.clamp(min=0)[:, None],
                       -keep[:, None].to(probs.dtype))
    return probs.mul_(keep[:, None])


def matmul_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the head's matmuls run in: autocast's when it is on, else the
    weight's (an autograd.Function does the casting autocast would do)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return weight.dtype
