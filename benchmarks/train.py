"""Training throughput: our GPT vs HF transformers' GPT2LMHeadModel, same shapes.

Both models get the same architecture (llm_reference.hf maps our config to a
GPT2Config), the same dtype, batch and sequence length, the same AdamW (torch's, fused
where available, with our decay / no-decay groups), and are timed on the same work:
forward, backward, optimizer step. Rounds alternate between the two so that load
from other processes hits both alike; each side's best round is reported.

    python benchmarks/train.py [--quick] [--shape cpu|gpt2-124m] [--dtype bfloat16]
                               [--compile] [--device cuda]

Prints tokens/s for `ours` and `peer`, their `ratio` (ours / peer, > 1 is faster) and,
on a GPU with a known peak, the MFU of each.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_reference.config import resolve_device  # noqa: E402
from llm_reference.hf import hf_config  # noqa: E402
from llm_reference.model import GPT, ModelConfig  # noqa: E402
from llm_reference.optim import make_optimizer  # noqa: E402

SHAPES = {
    # GPT-2 small's recipe scaled down to fit a CPU
    "cpu": dict(vocab_size=8192, context_length=256, n_layer=6, n_head=6, d_model=384),
    # GPT-2 small itself (use on a GPU)
    "gpt2-124m": dict(vocab_size=50304, context_length=1024, n_layer=12, n_head=12,
                      d_model=768),
}


class HFPeer(torch.nn.Module):
    """GPT2LMHeadModel behind our `forward(idx, targets) -> (logits, loss)`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        from transformers import GPT2LMHeadModel

        hf = hf_config(config)
        hf._attn_implementation = "sdpa"  # the same attention kernel as ours
        self.model = GPT2LMHeadModel(hf)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor):
        # HF shifts labels itself; passing idx as labels gives the same amount of
        # work (T - 1 predictions per row instead of T).
        out = self.model(input_ids=idx, labels=idx)
        return out.logits, out.loss


def make_step(model: torch.nn.Module, device: torch.device, dtype: str,
              compile_model: bool, batch: tuple[torch.Tensor, torch.Tensor]):
    """A closure doing one forward + backward + AdamW step on a fixed batch."""
    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.1)
    forward = model
    if compile_model and isinstance(model, GPT):
        model.compile()  # as the trainer does: each block and the loss
    elif compile_model:
        forward = torch.compile(model)
    autocast = (torch.autocast(device.type, dtype=getattr(torch, dtype))
                if dtype != "float32" else contextlib.nullcontext())
    x, y = batch

    def step() -> None:
        with autocast:
            _, loss = forward(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step, device: torch.device, n: int) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - start) / n


def peak_flops(device: torch.device, dtype: str) -> float | None:
    """The GPU's peak from llm_reference.hardware, when the catalog knows it."""
    if device.type != "cuda":
        return None
    from llm_reference.train import peak_flops as trainer_peak

    return trainer_peak(device, dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    parser.add_argument("--shape", choices=SHAPES, default="cpu",
                        help="model shape (default: cpu, GPT-2 scaled down)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="sequences per step (default: 4 on cpu, 16 for gpt2-124m)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                        help="autocast dtype (default: float32 on CPU, bfloat16 "
                             "on GPU)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile both models")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    batch_size = args.batch_size or (4 if args.shape == "cpu" else 16)
    rounds, steps = (2, 2) if args.quick else (4, 3)
    config = ModelConfig(**SHAPES[args.shape])
    T = config.context_length
    torch.manual_seed(0)
    x = torch.randint(0, config.vocab_size, (batch_size, T), device=device)
    y = torch.randint(0, config.vocab_size, (batch_size, T), device=device)

    models = {"ours": GPT(config), "peer": HFPeer(config)}
    step_fns = {}
    for name, model in models.items():
        model.to(device).train()
        step_fns[name] = make_step(model, device, dtype, args.compile, (x, y))
        step_fns[name]()  # warm-up: allocations, optimizer state, compilation
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, step in step_fns.items():
            best[name] = min(best[name], time_steps(step, device, steps))

    tokens = batch_size * T
    n_params = models["ours"].num_parameters()
    print(f"shape {args.shape}: {n_params / 1e6:.1f}M params, batch {batch_size} x "
          f"{T}, {dtype}, compile={args.compile}, device {device}, "
          f"{torch.get_num_threads()} threads, best of {rounds} rounds x {steps} steps")
    peak = peak_flops(device, dtype)
    flops_per_token = models["ours"].flops_per_token()
    for name in models:
        rate = tokens / best[name]
        mfu = f"  MFU {flops_per_token * rate / peak:.1%}" if peak else ""
        ms = best[name] * 1e3
        print(f"{name:<5} {rate:12,.0f} tokens/s  ({ms:.0f} ms/step){mfu}")
    print(f"ratio {best['peer'] / best['ours']:.2f}x  (ours / peer throughput)")


if __name__ == "__main__":
    main()
