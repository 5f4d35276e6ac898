"""int8 weight-only quantization: ours against PyTorch's dynamic int8 (the peer).

A mid-size GPT for a CPU (6 layers, d_model 384, 6 heads, context 128, ~10.6 M
non-embedding parameters), pretrained briefly on a prepared sample of the stdlib so
its weights and perplexity are those of a (lightly) trained model; or `--run DIR`
for a real run. Variants:

- fp32: the model as trained;
- ours: `quantize_model` (int8 per-channel weights, dequantize then matmul): the
  readable reference;
- ours (kernel): the same int8 weights through `int8_matmul` (activations rounded to
  int8 per token on the fly, `torch._int_mm`), what a loaded int8 folder runs;
- peer: `torch.ao.quantization.quantize_dynamic` with per-channel int8 weights
  (and int8 activations computed on the fly). torch.ao's quantization API is
  deprecated (its successor is the `torchao` package), but it is the int8 CPU
  path PyTorch itself ships, so it stays the peer. Target: kernel/peer >= 1.0x.

Each variant is measured on: size of its serialized weights (safetensors for fp32
and ours; the peer's packed weights only serialize with torch.save, measured in
memory), bytes of parameters and buffers, greedy tokens/s (batch 1, KV cache, best of
--repeats, variants interleaved so they share the machine's load), and perplexity on
the same held-out batches.

    python benchmarks/quantize.py            # 150 training steps first (~5-8 min)
    python benchmarks/quantize.py --quick    # 30 steps, shorter timings (~2-3 min)
    python benchmarks/quantize.py --run runs/small

Timings on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from llm_reference.checkpoint import load_model
from llm_reference.config import RunConfig
from llm_reference.data import Batches, PrepareSettings, prepare
from llm_reference.generate import generate
from llm_reference.quantize import (
    memory_bytes,
    quantize_model,
    set_int8_kernel,
    torch_dynamic_int8,
    torch_serialized_bytes,
    validation_loss,
)
from llm_reference.train import train

MODEL = {"vocab_size": "auto", "context_length": 128, "n_layer": 6, "n_head": 6,
         "d_model": 384}


def pretrain(root: Path, steps: int, max_bytes: int) -> Path:
    """Prepare a stdlib sample (vocabulary 4096) and pretrain MODEL on it."""
    data = root / "data"
    prepare(PrepareSettings(max_bytes=max_bytes, vocab_size=4096, val_fraction=0.1,
                            near_dup_threshold=None, redact=False), data, workers=2)
    config = RunConfig.from_dict({"model": MODEL, "train": {
        "data_dir": str(data), "batch_size": 8, "max_steps": steps, "lr": 2e-3,
        "min_lr": 2e-4, "warmup_steps": min(50, steps // 5), "eval_interval": steps,
        "eval_steps": 4, "checkpoint_interval": steps, "keep_last": 1,
        "device": "cpu"}})
    train(config, root / "run")
    return root / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer training steps, tokens and repeats")
    parser.add_argument("--run", type=Path,
                        help="measure this trained run instead of pretraining one")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: 1)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed generations per variant; the best counts "
                             "(default: 3, quick: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps, new_tokens = (30, 64) if args.quick else (150, 100)
    repeats = args.repeats or (2 if args.quick else 3)
    val_batches = 4 if args.quick else 10

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run or pretrain(Path(tmp), steps,
                                       400_000 if args.quick else 1_000_000)
        model, tokenizer, state = load_model(run_dir)
        t = state["config"]["train"]
        batches = Batches(t["data_dir"], "val", t["batch_size"],
                          model.config.context_length, seed=t["seed"])
        ours = copy.deepcopy(model)
        quantize_model(ours)
        kernel = copy.deepcopy(ours)
        set_int8_kernel(kernel, True)
        peer, note = torch_dynamic_int8(model)
        if peer is None:
            raise SystemExit(f"no peer: {note}")
        variants = {"fp32": model, "ours": ours, "ours (kernel)": kernel, "peer": peer}
        prompt = tokenizer.encode("def read_config(path):\n    ")
        results = measure(variants, prompt, new_tokens, repeats, batches, val_batches)

    print(f"int8 weight-only vs torch.ao dynamic int8: {model.config.n_layer} layers x "
          f"d_model {model.config.d_model}, vocab {model.config.vocab_size}, "
          f"{model.num_parameters() / 1e6:.1f} M params, trained {state['step']} "
          f"steps, {args.threads} thread(s), greedy {new_tokens} tokens, "
          f"best of {repeats}")
    print(f"peer: {note}")
    results["fp32"]["disk"] = len(safetensors_bytes(model.state_dict()))
    results["ours"]["disk"] = results["ours (kernel)"]["disk"] = len(
        safetensors_bytes(ours.state_dict()))
    results["peer"]["disk"] = torch_serialized_bytes(peer)
    print_table(results)


def measure(variants: dict, prompt: list[int], new_tokens: int, repeats: int,
            batches: Batches, val_batches: int) -> dict[str, dict]:
    results = {name: {"seconds": math.inf} for name in variants}
    for model in variants.values():  # warm up
        list(generate(model, prompt, 4, temperature=0))
    tokens = {}
    for _ in range(repeats):
        for name, model in variants.items():
            start = time.perf_counter()
            tokens[name] = list(generate(model, prompt, new_tokens, temperature=0))
            elapsed = time.perf_counter() - start
            results[name]["seconds"] = min(results[name]["seconds"], elapsed)
    for name, model in variants.items():
        loss = validation_loss(model, batches, val_batches, torch.device("cpu"))
        same = next((i for i, (a, b) in enumerate(zip(tokens[name], tokens["fp32"]))
                     if a != b), len(tokens[name]))
        results[name].update(tokens_per_s=new_tokens / results[name]["seconds"],
                             memory=memory_bytes(model), perplexity=math.exp(loss),
                             same=same)
    return results


def print_table(results: dict[str, dict]) -> None:
    """One line per metric: fp32, ours, ours (kernel), peer, and ours / peer."""
    rows = [("metric", "fp32", "ours", "ours (kernel)", "peer", "ratio ours/peer",
             "ratio kernel/peer")]
    metrics = (("disk MB", "disk", 1e-6), ("memory MB", "memory", 1e-6),
               ("tokens/s", "tokens_per_s", 1), ("perplexity", "perplexity", 1),
               ("greedy tokens = fp32", "same", 1))
    for label, key, unit in metrics:
        values = [results[n][key] * unit for n in ("fp32", "ours", "ours (kernel)",
                                                    "peer")]
        rows.append((label, *[f"{v:.2f}" for v in values],
                     f"{values[1] / values[3]:.3f}x", f"{values[2] / values[3]:.3f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    main()
