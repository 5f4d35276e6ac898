"""Training on many devices with torchrun: one process per device, data parallel.

`torchrun --nproc-per-node N -m llm_reference train …` starts N copies of the
training command (on each of `--nnodes` machines) and tells each one who it is in
environment variables:

    RANK        this process's number in the whole job, 0 .. WORLD_SIZE - 1
    LOCAL_RANK  its number on this machine: which GPU it drives
    WORLD_SIZE  how many processes there are in all (machines x processes each)

Every process trains the same model on its own batches (rank r draws
`Batches(…, rank=r)`), and the gradients are averaged across processes after each
backward pass, so every process takes the same optimizer step. One step therefore
sees a global batch of

    batch_size x grad_accum x WORLD_SIZE sequences of context_length tokens.

Two ways to hold the model (`train.parallel`):

- "ddp" (DistributedDataParallel): a whole replica per process; the gradients are
  all-reduced during the backward pass, bucket by bucket, while it still runs.
- "fsdp" (FSDP2, `fully_shard`): each process keeps 1/N of every parameter,
  gradient and AdamW state. A block's full weights are all-gathered just before its
  forward (and again before its backward) and dropped after; its gradients are
  reduce-scattered so each process gets the averaged slice it owns. Memory per
  process falls by about N for the states, at the price of more communication.

Rank 0, "the main process", is the only one that writes files or prints. Without
WORLD_SIZE in the environment (plain `python -m llm_reference train`) every function
here does nothing, and a single-process run is exactly what it was.
"""

from __future__ import annotations

import gc
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.nn.parallel import DistributedDataParallel as DDP

# FSDP2 and its state-dict helpers are imported where they are used: they take
# about two seconds to import, which DDP and single-process runs need not pay.
from .errors import UserError


@dataclass(frozen=True)
class Context:
    """Who this process is in the job, and the device it drives."""

    device: torch.device
    rank: int = 0  # 0 .. world_size - 1, over all machines
    local_rank: int = 0  # on this machine
    world_size: int = 1  # processes in all; 1 = a single-process run


def setup(device: torch.device) -> Context:
    """Join the torchrun job this process belongs to, if any.

    Each process takes the GPU of its LOCAL_RANK and joins the process group: NCCL
    between GPUs, Gloo between CPUs. torchrun also sets MASTER_ADDR and MASTER_PORT,
    where the processes meet (`env://`, the default).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # NCCL and new CUDA tensors use this GPU
    elif device.type != "cpu":
        raise UserError(f'config train.device: distributed training runs on "cuda" '
                        f'or "cpu", got "{device.type}"')
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world_size,
                            device_id=device if device.type == "cuda" else None)
    return Context(device, rank, local_rank, world_size)


def cleanup() -> None:
    """Leave the process group (a no-op in a single-process run).

    Garbage is collected first: a sharded model lives in reference cycles (FSDP's
    hooks refer back to their modules) that keep the group's C++ object alive. If
    it outlived this call, it would be destroyed during interpreter shutdown, when
    Gloo's worker threads can no longer take the GIL to free their tensors, and
    the process would abort with "terminate called without an active exception".
    """
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def is_main() -> bool:
    """True in the process that writes files and prints: rank 0, or the only one.

    Read from torchrun's environment, so it holds before the process group is set
    up and after it is torn down.
    """
    return (int(os.environ.get("WORLD_SIZE", "1")) == 1
            or int(os.environ.get("RANK", "0")) == 0)


def barrier() -> None:
    """Wait until every process gets here."""
    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of `x` over all processes (`x` itself in a single process).

    Each process's loss is the mean over its own batches; their mean is the loss
    over the global batch, the number a single process would log.
    """
    if not dist.is_initialized():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)  # Gloo has no AVG: sum, then divide
    return x / dist.get_world_size()


def agree(values: list[int]) -> list[int]:
    """The largest of each value over all processes: decisions every process must
    take together (stop on a signal that only some received, save on a clock that
    only some saw run out) become one. Unchanged in a single process."""
    if not dist.is_initialized():
        return values
    x = torch.tensor(values, dtype=torch.int64, device=_collective_device())
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x.tolist()


def gather(obj: Any) -> list[Any]:
    """Every process's `obj` (JSON-able), in rank order; [obj] in a single process."""
    if not dist.is_initialized():
        return [obj]
    objects: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(objects, obj)
    return objects


def _collective_device() -> torch.device:
    """Where tensors of a collective live: NCCL moves GPU memory only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ------------------------------------------------------------------- the model

# DDP's switch for re-sending buffers every forward: renamed in PyTorch 2.13
BUFFER_SYNC = ("forward_sync_buffers"
               if "forward_sync_buffers" in inspect.signature(DDP).parameters
               else "broadcast_buffers")


def wrap_model(model: nn.Module, ctx: Context, parallel: str = "ddp",
               dtype: str = "float32") -> nn.Module:
    """The module to run forward and backward: `model` itself in a single process,
    else `model` in DDP, or `model` sharded in place by FSDP2.

    Make the optimizer after this: FSDP2 turns the parameters into DTensors, each
    process's slice of the full tensor.
    """
    if ctx.world_size == 1:
        return model
    if parallel == "ddp":
        # DDP starts by copying rank 0's weights to every replica, then registers a
        # hook per parameter that all-reduces gradients as the backward makes them.
        # The gradients live inside DDP's all-reduce buckets (no second copy), and
        # buffers are not re-sent every forward: ours (RoPE tables) never change.
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return DDP(model, device_ids=device_ids, gradient_as_bucket_view=True,
                   **{BUFFER_SYNC: False})
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(ctx.device.type, (dist.get_world_size(),))
        policy = fsdp_precision(dtype)
        # One shard group per block: only the block that runs has its full weights
        # gathered. The root group holds the rest (embeddings, final norm, head).
        for block in model.blocks:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        return model
    raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {parallel!r}")


def fsdp_precision(dtype: str) -> Any:
    """FSDP2's mixed precision for `train.dtype`.

    In bfloat16 the weights are gathered in bf16 (half the bytes of fp32 over the
    wire and in memory while a block runs; autocast would cast them anyway), and
    gradients are reduce-scattered in float32, as a sum over many processes in
    bf16 would lose their small parts. The shards the optimizer updates stay fp32.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if dtype == "bfloat16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                    reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()  # float32 throughout


def sync_gradients(model: nn.Module, sync: bool) -> None:
    """Whether the next backward pass averages the gradients across processes.

    Under gradient accumulation only the last micro-batch's backward needs to: the
    earlier ones just add into `.grad` locally, and one all-reduce of the sum does
    the work of grad_accum of them. (`DDP.no_sync()` sets the same flag.) FSDP2
    keeps reduce-scattering every micro-batch: skipping that would hold whole,
    unsharded gradients in memory, which is what FSDP is there to avoid.
    """
    if isinstance(model, DDP):
        model.require_backward_grad_sync = sync


def clip_grad_norm(model: nn.Module, max_norm: float) -> float:
    """Clip the gradients' global L2 norm to `max_norm`; return the norm before.

    Under DDP every process holds the same averaged gradients, so its local norm is
    the global one. Under FSDP each holds a slice: the norm of the whole is a
    DTensor that combines the slices' norms across processes.
    """
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if is_sharded(model):
        norm = norm.full_tensor()  # a DTensor: each process has its slice's part
    return norm.item()


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 sharded `model` (if FSDP was never imported, it did not)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return fsdp is not None and isinstance(model, fsdp.FSDPModule)


# ------------------------------------------------------------------ checkpoints


def state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, optimizer state) in the layout of `model.state_dict()` and
    `optimizer.state_dict()`, whole tensors, as a single process has them.

    Under FSDP each process holds slices: gathering the full tensors is work every
    process takes part in, and the result lands on rank 0, on the CPU (the other
    processes get empty dicts). So the checkpoint is the same safetensors files
    whatever wrote it, and `eval`, `generate` or a DDP run can load it.
    """
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    by_name = get_optimizer_state_dict(model, optimizer, options=options)
    if not is_main():
        return weights, by_name
    # The full optimizer state is keyed by parameter name; a single process's
    # optimizer.state_dict() by the parameter's position in the param groups.
    index = {name: i for i, name in enumerate(param_names(model, optimizer))}
    state = {index[name]: s for name, s in by_name["state"].items()}
    groups = [{**g, "params": [index[n] for n in g["params"]]}
              for g in by_name["param_groups"]]
    return weights, {"state": state, "param_groups": groups}


def load_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer,
                     weights: dict[str, torch.Tensor],
                     optimizer_state: dict[str, Any]) -> None:
    """Load what `state_dicts` returned; under FSDP each process keeps its slices."""
    if not is_sharded(model):
        model.load_state_dict(weights)
        optimizer.load_state_dict(optimizer_state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    names = param_names(model, optimizer)
    by_name = {
        "state": {names[i]: s for i, s in optimizer_state["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]}
                         for g in optimizer_state["param_groups"]],
    }
    options = StateDictOptions(full_state_dict=True)
    # a copy: loading replaces the dict's tensors by this process's shards
    set_model_state_dict(model, dict(weights), options=options)
    set_optimizer_state_dict(model, optimizer, by_name, options=options)


def param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The parameters' names in the optimizer's order: position i in
    `optimizer.state_dict()` is the parameter called `param_names(…)[i]`."""
    name = {id(p): n for n, p in model.named_parameters()}
    return [name[id(p)] for group in optimizer.param_groups for p in group["params"]]
