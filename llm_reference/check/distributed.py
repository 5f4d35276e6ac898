"""distributed: split the work across ranks and average gradients, in one process.

Protocol: a module with three functions

    eval_indices(n_batches, rank, world_size) -> list[int]
    all_reduce_mean(values) -> list[tensor]
    data_parallel_gradients(model, x, y, world_size) -> dict[str, tensor]

`eval_indices`: the validation batches rank `rank` of `world_size` evaluates:
every world_size-th index starting at rank, rank, rank + W, …, below n_batches
rounded up to a multiple of W. Every rank gets the same number of batches (a
collective waits for every rank: one rank with a batch fewer would hang the
others), together they cover 0 .. n_batches - 1, and no index twice.

`all_reduce_mean`: values holds one tensor per rank, all the same shape; return a
list with one tensor per rank, each the element-wise mean of all of them (what
`dist.all_reduce` with a sum, divided by W, leaves on every rank). Do not change
the inputs.

`data_parallel_gradients`: simulate W ranks of DDP in this one process. model(x,
y) returns (None, loss) like the reference GPT, the mean loss over the batch x, y
(both (B, T) int64; B is a multiple of W). Give rank r the r-th of W equal
contiguous slices of the batch (x.chunk(W)[r]) and its own copy of the model
(copy.deepcopy), run forward and backward there, average the ranks' gradients with
all_reduce_mean, and return {parameter name: averaged gradient} for every parameter
of model.named_parameters(). Do not leave gradients on `model` itself. The result
must equal the gradient of the whole batch in one process: the gradient of a mean
is the mean of the gradients.

Reference: the indices of `Trainer.evaluate`, `llm_reference.distributed.
all_reduce_mean` (NCCL or Gloo under torchrun), and one process's backward pass on
the whole batch.
Command: python -m llm_reference check distributed --impl my_distributed
Tolerance: indices exactly; float32, |Δ| <= 1e-6 + 1e-4 |expected|.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Callable

import torch

from ..model import GPT, ModelConfig
from .runner import (
    Node,
    Suspect,
    as_tensor,
    expect_close,
    expect_equal,
    fail,
    generator,
)


def reference_eval_indices(n_batches: int, rank: int, world_size: int) -> list[int]:
    return list(range(rank, math.ceil(n_batches / world_size) * world_size,
                      world_size))


def reference_all_reduce_mean(values: list[torch.Tensor]) -> list[torch.Tensor]:
    mean = torch.stack(values).mean(dim=0)
    return [mean.clone() for _ in values]


def reference_gradients(model: GPT, x: torch.Tensor, y: torch.Tensor,
                        world_size: int) -> dict[str, torch.Tensor]:
    """One process, the whole batch: the gradient every DDP rank ends up with."""
    model.zero_grad(set_to_none=True)
    model(x, y)[1].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


node = Node(
    id="distributed",
    title="DDP / FSDP with torchrun",
    protocol=__doc__,
    example="my_distributed",
    reference=lambda: SimpleNamespace(
        eval_indices=reference_eval_indices, all_reduce_mean=reference_all_reduce_mean,
        data_parallel_gradients=reference_gradients),
    parts=("eval_indices", "all_reduce_mean", "data_parallel_gradients"),
)
TOL = dict(atol=1e-6, rtol=1e-4)
CONFIG = ModelConfig(vocab_size=32, context_length=8, n_layer=1, n_head=2,
                     d_model=16)


@node.check("eval_indices_cover_once", uses=["eval_indices"],
            section="The mean gradient of the global batch",
            hint="rank r takes r, r + W, r + 2W, … below ceil(n / W) * W: the same "
                 "count on every rank, every batch once")
def eval_indices_cover_once(eval_indices: Callable) -> None:
    for n, W in ((8, 4), (10, 4), (3, 8), (7, 1)):
        for rank in range(W):
            ours = [int(i) for i in eval_indices(n, rank, W)]
            expect_equal(ours, reference_eval_indices(n, rank, W),
                         f"indices of rank {rank} of {W} for {n} batches")


@node.check("all_reduce_mean_matches_reference", uses=["all_reduce_mean"],
            section="DDP: a replica per process",
            hint="every rank receives the same mean, sum / W, not the sum")
def all_reduce_mean_matches_reference(all_reduce_mean: Callable) -> None:
    values = [torch.randn(3, 4, generator=generator(r)) for r in range(4)]
    copies = [v.clone() for v in values]
    out = list(all_reduce_mean(copies))
    expect_equal(len(out), 4, "the number of tensors returned (one per rank)")
    expected = torch.stack(values).mean(dim=0)
    for r, got in enumerate(out):
        expect_close(as_tensor(got, f"rank {r}'s result"), expected,
                     f"rank {r}'s result", **TOL, suspects=[
            Suspect(torch.stack(values).sum(dim=0), "the sum over ranks",
                    "divide the sum by the number of ranks")])
    for r, (v, c) in enumerate(zip(values, copies)):
        if not torch.equal(v, c):
            fail(f"all_reduce_mean changed its input {r}")


def gradients_of(impl: Callable, world_size: int, B: int = 4
                 ) -> tuple[dict[str, Any], dict[str, torch.Tensor], GPT]:
    torch.manual_seed(0)
    model = GPT(CONFIG)
    x = torch.randint(0, 32, (B, 8), generator=generator(1))
    y = torch.randint(0, 32, (B, 8), generator=generator(2))
    ours = impl(model, x.clone(), y.clone(), world_size)
    return ours, reference_gradients(model, x, y, world_size), model


def expect_same_gradients(ours: Any, expected: dict[str, torch.Tensor],
                          world_size: int) -> None:
    if not isinstance(ours, dict):
        fail(f"returned a {type(ours).__name__}, expected a dict of gradients")
    missing = [n for n in expected if n not in ours]
    if missing:
        fail(f"no gradient for {missing[0]!r} ({len(missing)} of {len(expected)} "
             "parameters missing)")
    for name, want in expected.items():
        expect_close(as_tensor(ours[name], name), want,
                     f"gradient of {name} with {world_size} ranks", **TOL, suspects=[
            Suspect(want * world_size, "the sum of the ranks' gradients",
                    "average the gradients: sum / W")])


@node.check("ddp_equals_one_process", uses=["data_parallel_gradients"],
            section="The mean gradient of the global batch",
            hint="each rank: a deep copy, its own slice x.chunk(W)[r], backward; "
                 "then the mean of the ranks' gradients")
def ddp_equals_one_process(impl: Callable) -> None:
    for world_size in (2, 4):
        ours, expected, model = gradients_of(impl, world_size)
        expect_same_gradients(ours, expected, world_size)
        if any(p.grad is not None for p in model.parameters()):
            fail("the model passed in has gradients afterwards: compute them on "
                 "the ranks' copies")


@node.check("one_rank_is_plain_training", uses=["data_parallel_gradients"],
            section="DDP: a replica per process",
            hint="with W = 1 the single rank's gradient is the whole batch's")
def one_rank_is_plain_training(impl: Callable) -> None:
    ours, expected, _ = gradients_of(impl, 1, B=2)
    expect_same_gradients(ours, expected, 1)
