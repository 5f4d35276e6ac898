"""Data parallelism simulated in one process, for the `distributed` checkpoint.

Fill in each function, then run from this folder (no torchrun, no GPU needed):

    python -m llm_reference check distributed --impl my_distributed

(`python -m llm_reference check --list distributed` prints the full protocol.)
"""

from __future__ import annotations

import torch


def eval_indices(n_batches: int, rank: int, world_size: int) -> list[int]:
    """rank, rank + W, … below n_batches rounded up to a multiple of W: the same
    count on every rank."""
    raise NotImplementedError("eval_indices")


def all_reduce_mean(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """One tensor per rank in, one per rank out: each the mean of all of them."""
    raise NotImplementedError("all_reduce_mean")


def data_parallel_gradients(model: torch.nn.Module, x: torch.Tensor,
                            y: torch.Tensor, world_size: int
                            ) -> dict[str, torch.Tensor]:
    """W ranks, each with a deep copy of the model and x.chunk(W)[r], y.chunk(W)[r]:
    forward (model(x, y) returns (None, loss)), backward, then all_reduce_mean of
    the gradients. Return {parameter name: averaged gradient}."""
    raise NotImplementedError("data_parallel_gradients")
