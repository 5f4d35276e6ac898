# %% [markdown]
# # Data parallelism, measured on two CPU processes
#
# We launch the real training command under torchrun: two processes on this
# machine's CPUs, talking over Gloo (GPUs would use NCCL; nothing here measures
# GPUs). Then one process trains the same model on the union of both ranks'
# batches, with a twice larger grad_accum: the same global batch. If DDP is the
# mean gradient of the global batch, the two runs log the same losses and end with
# the same weights, up to float32 rounding. Last, the planner's memory model: what
# FSDP saves per GPU for the researcher track's models.

# %%
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from safetensors.torch import load_file

from llm_reference import checkpoint, plan
from llm_reference.config import load_config
from llm_reference.data import Batches
from llm_reference.flops import count_parameters
from llm_reference.memory import (
    USABLE_MEMORY,
    state_bytes_per_param,
    training_memory,
)
from llm_reference.model import ModelConfig
from llm_reference.quickstart import tiny_data
from llm_reference.train import Trainer

BOOK = {"timeout": 240, "seed": 0,
        "settings": {"max_bytes": 150_000, "vocab_size": 384, "world_size": 2,
                     "grad_accum": 2, "batch_size": 4, "steps": 6,
                     "shards": [1, 2, 4, 8]}}
S = BOOK["settings"]
W, A, STEPS = S["world_size"], S["grad_accum"], S["steps"]
torch.set_num_threads(1)
data_dir = str(tiny_data(max_bytes=S["max_bytes"], vocab_size=S["vocab_size"],
                         val_fraction=0.2, near_dup_threshold=None,
                         redact=False))  # `prepare`, cached
SETTINGS = ["model.n_layer=2", "model.n_head=2", "model.d_model=32",
            "model.context_length=16", f"train.batch_size={S['batch_size']}",
            f"train.grad_accum={A}", f"train.max_steps={STEPS}",
            f"train.eval_interval={STEPS}", "train.eval_steps=2",
            f"train.checkpoint_interval={STEPS}", "train.warmup_steps=2",
            'train.device="cpu"', f"train.seed={BOOK['seed']}"]

# %% tags=["checkpoint"]
command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", str(W), "-m", "llm_reference", "train",
           "--preset", "tiny", "--data", data_dir, "--out", "runs/ddp",
           *[a for s in SETTINGS for a in ("--set", s)]]
env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process
done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
assert done.returncode == 0, done.stderr[-3000:]
print(next(line for line in done.stderr.splitlines() if "tokens/step" in line))
ddp = [json.loads(line) for line in Path("runs/ddp/metrics.jsonl").open()]
ddp = [r for r in ddp if "event" not in r]


class UnionOfRanks:
    """Every rank's batches in the order one process must see them: its micro-batch
    s*A*W + r*A + i is rank r's micro-batch s*A + i (A = grad_accum)."""

    def __init__(self, ranks: list[Batches]):
        self.ranks = ranks

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        step, k = divmod(index, A * W)
        rank, micro = divmod(k, A)
        return self.ranks[rank].get(step * A + micro)


config = load_config(config_file="runs/ddp/config.toml",
                     overrides=[f"train.grad_accum={A * W}"])
single = Trainer(config, "runs/single")
T = single.model_config.context_length
single.train_batches = UnionOfRanks([
    Batches(data_dir, "train", S["batch_size"], T, config.train.seed, rank=r,
            world_size=W) for r in range(W)])
print(f"step  DDP, {W} processes  1 process, grad_accum {A * W}  difference")
rows = []
for record in ddp:
    result = single.train_step()
    diff = record["loss"] - result.loss
    rows.append({"step": record["step"], "ddp": record["loss"],
                 "single": result.loss, "diff": f"{diff:+.1e}"})
    print(f"{record['step']:4d}  {record['loss']:17.6f}  {result.loss:23.6f}"
          f"  {diff:+10.1e}")
weights = load_file(checkpoint.find_checkpoint("runs/ddp") / "model.safetensors")
max_diff = max((weights[n] - p).abs().max().item()
               for n, p in single.model.state_dict().items())
print(f"max |weight difference| after {STEPS} steps: {max_diff:.1e}")

# %% [markdown]
# FSDP memory per GPU for the researcher track's plans: model states (weights,
# gradients, AdamW moments, bf16 copies) are divided by the number of shards;
# activations and logits are not, since each GPU still runs its own micro-batch.

# %% tags=["memory"]
GIB = 2 ** 30
budgets = plan.TRACKS["researcher"].budgets
plans = [plan.make_plan(b, "researcher") for b in budgets]
hw = plans[0].hardware
# (name, model, micro-batch, activation checkpointing): the track's two plans, and
# a model of Llama 2 7B's shape that no single 80 GB GPU can train
models = [(b, p.model, p.train["batch_size"], p.activation_checkpointing)
          for b, p in zip(budgets, plans)]
models.append(("7B (Llama-2 shape)",
               {**plans[0].model, "n_layer": 32, "n_head": 32, "n_kv_head": 32,
                "d_model": 4096, "d_ff": 11008, "vocab_size": 32000}, 1, True))
memory = []
for name, model, micro_batch, checkpointing in models:
    params = count_parameters(ModelConfig.from_dict(model))
    for shards in S["shards"]:
        m = training_memory(ModelConfig.from_dict(model), micro_batch, "bfloat16",
                            checkpointing, shards=shards)
        memory.append({
            "model": name, "params_b": params / 1e9, "gpus": shards,
            "states_gib": m["model_states"] / GIB,
            "rest_gib": (m["activations"] + m["logits"]) / GIB,
            "total_gib": m["total"] / GIB,
            "fits": "yes" if m["total"] <= hw.memory_gib * GIB * USABLE_MEMORY
            else "no",
            # one ring all-reduce of fp32 gradients, bytes each GPU sends
            "allreduce_gb": 2 * (shards - 1) / shards * 4 * params / 1e9})
for row in memory:
    print(f"{row['model']:18s} {row['gpus']} GPU(s): states "
          f"{row['states_gib']:5.1f} + rest {row['rest_gib']:4.1f} = "
          f"{row['total_gib']:5.1f} GiB, fits: {row['fits']}")

# %% [markdown]
# Both results as one figure: the two runs' losses, step by step, and the memory per
# GPU of each model as the number of shards grows.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 2.7),
                                  gridspec_kw={"width_ratios": [1, 1.5]})
left.plot([r["step"] for r in rows], [r["single"] for r in rows], color="#0969da",
          label="1 process")
left.plot([r["step"] for r in rows], [r["ddp"] for r in rows], linestyle="none",
          marker="o", markerfacecolor="none", color="#bc4c00",
          label=f"DDP, {W} processes")
left.set_xlabel("step")
left.set_ylabel("training loss")
left.legend(frameon=False, fontsize=8)
usable = hw.memory_gib * USABLE_MEMORY
for (name, *_), color in zip(models, ("#0969da", "#bc4c00", "#57606a")):
    mine = [r for r in memory if r["model"] == name]
    right.plot([r["gpus"] for r in mine], [r["total_gib"] for r in mine],
               marker="o", markersize=3, color=color, label=name)
    right.plot([r["gpus"] for r in mine], [r["rest_gib"] for r in mine],
               linestyle=":", color=color)
right.axhline(usable, color="#cf222e", linewidth=0.8)
right.text(S["shards"][-1], usable,
           f"{USABLE_MEMORY:.0%} of {hw.key}'s {hw.memory_gib:.0f} GiB",
           ha="right", va="top", fontsize=7, color="#cf222e")
right.set_xscale("log", base=2)
right.set_xticks(S["shards"], [str(n) for n in S["shards"]])
right.set_xlabel("GPUs sharing the model states (FSDP)")
right.set_ylabel("GiB per GPU")
right.legend(frameon=False, fontsize=7, title="total (dotted: activations"
             " + logits)", title_fontsize=7)
for ax in (left, right):
    ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("distributed.svg")

# %%
json.dump({"losses": rows, "max_weight_diff": max_diff, "memory": memory,
           "bytes_per_param": state_bytes_per_param("bfloat16"),
           "hardware": {"name": hw.name, "memory_gib": hw.memory_gib,
                        "link_gbs": hw.link_gbs},
           "settings": S, "tokens_per_step": S["batch_size"] * A * T * W,
           "context_length": T}, open("distributed.json", "w"), indent=1)
