# %% [markdown]
# # Pretraining a small GPT on CPU
#
# We prepare a slice of the default corpus (Python's standard library) with a
# 2048-token vocabulary, train the `small` preset on it with the real training loop
# (`llm_reference.train.train`: AdamW, warmup + cosine schedule, clipping,
# evaluations, checkpoints), and look at the loss curve, the throughput and a few
# samples. We also draw the two learning-rate schedules, cosine and WSD.

# %%
import json
import math
import statistics
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from llm_reference.checkpoint import list_checkpoints, load_model
from llm_reference.config import load_config
from llm_reference.data import load_meta
from llm_reference.generate import generate
from llm_reference.metrics_plot import read_metrics
from llm_reference.optim import param_groups
from llm_reference.quickstart import tiny_data
from llm_reference.schedule import lr_at
from llm_reference.train import train

BOOK = {"timeout": 600, "seed": 1337,
        "settings": {"max_bytes": 2_500_000, "vocab_size": 2048, "val_fraction": 0.04,
                     "max_steps": 300, "warmup_steps": 30, "eval_interval": 30,
                     "checkpoint_interval": 150, "threads": 2,
                     "prompts": ["def ", "import os\n", "class "],
                     "sample_tokens": 60}}
S = BOOK["settings"]
torch.set_num_threads(S["threads"])
workdir = tempfile.TemporaryDirectory()
run_dir = Path(workdir.name) / "small"

# %% [markdown]
# ## The learning-rate schedules
#
# `lr_at` for the small preset's numbers, cosine and warmup-stable-decay (WSD) with
# its default `decay_frac = 0.2`.

# %% tags=["schedule"]
shape = {"lr": 2e-3, "min_lr": 2e-4, "warmup_steps": S["warmup_steps"],
         "max_steps": S["max_steps"]}
steps = list(range(S["max_steps"]))
curves = {name: [lr_at(s, schedule=name, **shape) for s in steps]
          for name in ("cosine", "wsd")}
n = S["max_steps"]
for s in (0, S["warmup_steps"] - 1, S["warmup_steps"], n // 2, int(0.8 * n),
          int(0.9 * n), n - 1):
    print(f"step {s:3}: cosine {curves['cosine'][s]:.2e}   wsd {curves['wsd'][s]:.2e}")
fig, ax = plt.subplots(figsize=(6, 2.4))
for (name, lrs), color in zip(curves.items(), ("#0969da", "#bc4c00")):
    ax.plot(steps, lrs, color=color, label=name)
ax.set_xlabel("optimizer step")
ax.set_ylabel("learning rate")
ax.legend(frameon=False)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("lr_schedules.svg")

# %% [markdown]
# ## Data: a slice of the default corpus
#
# `tiny_data` runs `prepare` (the dataset step) and keeps the folder in a cache.

# %% tags=["data"]
data_dir = tiny_data(max_bytes=S["max_bytes"], vocab_size=S["vocab_size"],
                     val_fraction=S["val_fraction"])
meta = load_meta(data_dir)
print(f"{meta['train_tokens']:,} training and {meta['val_tokens']:,} validation "
      f"tokens, vocabulary {meta['vocab_size']:,}")

# %% [markdown]
# ## Train the small preset
#
# The `small` preset (2 layers, width 128, context 128, batch 16), shortened to
# `max_steps` steps so that the book builds in minutes.

# %% tags=["checkpoint"]
config = load_config("small", overrides=[
    f"train.data_dir={json.dumps(str(data_dir))}", 'train.device="cpu"',
    f"train.max_steps={S['max_steps']}", f"train.warmup_steps={S['warmup_steps']}",
    f"train.eval_interval={S['eval_interval']}",
    f"train.checkpoint_interval={S['checkpoint_interval']}"])
result = train(config, run_dir)
records = read_metrics(run_dir / "metrics.jsonl")
rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
tokens = S["max_steps"] * config.train.batch_size * 128
print(f"trained {tokens:,} tokens in {S['max_steps']} steps: final val loss "
      f"{result['val_loss']:.3f} (perplexity {math.exp(result['val_loss']):.1f}), "
      f"median {statistics.median(rates):,.0f} tokens/s")
print("checkpoints:", ", ".join(p.name for p in list_checkpoints(run_dir)))

# %% [markdown]
# ## What the run wrote

# %% tags=["files"]
model, tokenizer, state = load_model(run_dir)
groups = param_groups(model, config.train.weight_decay)
for g in groups:
    n = sum(p.numel() for p in g["params"])
    print(f"weight_decay {g['weight_decay']}: {len(g['params'])} tensors, {n:,} "
          "parameters")
last = list_checkpoints(run_dir)[-1]
for f in sorted(last.iterdir()):
    print(f"{last.name}/{f.name}: {f.stat().st_size / 1024:,.0f} KiB")
print(f"state.json: step {state['step']}, data_position {state['data_position']}, "
      f"keys {sorted(state)}")

# %% [markdown]
# ## Samples (temperature 0.8, top-k 50)

# %% tags=["samples"]
samples = []
for i, prompt in enumerate(S["prompts"]):
    ids = tokenizer.encode(prompt)
    new = list(generate(model, ids, S["sample_tokens"], temperature=0.8, top_k=50,
                        seed=i))
    samples.append(prompt + tokenizer.decode(new))
    print(f"--- prompt {prompt!r}\n{samples[-1]}\n")

# %%
steps_logged = [r for r in records if "loss" in r]
evals = [r for r in records if "val_loss" in r]
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.plot([r["step"] for r in steps_logged], [r["loss"] for r in steps_logged],
        color="#0969da", linewidth=0.8, alpha=0.8, label="training loss (one batch)")
ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], marker="o",
        markersize=3, color="#bc4c00", label="validation loss")
ax.axhline(math.log(meta["vocab_size"]), color="#57606a", linestyle="--",
           linewidth=0.9)
ax.text(S["max_steps"], math.log(meta["vocab_size"]) + 0.05, "ln V", ha="right",
        va="bottom", fontsize=8, color="#57606a")
ax.set_xlabel("optimizer step")
ax.set_ylabel("cross-entropy (nats/token)")
ax.legend(frameon=False)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("loss_curve.svg")
grad_norms = [r["grad_norm"] for r in steps_logged]
json.dump({"train_tokens": meta["train_tokens"], "val_tokens": meta["val_tokens"],
           "vocab_size": meta["vocab_size"], "tokens_trained": tokens,
           "max_steps": S["max_steps"], "warmup_steps": S["warmup_steps"],
           "params": model.num_parameters(),
           "non_embedding": model.num_parameters(non_embedding=True),
           "flops_per_token": model.flops_per_token(),
           "tokens_per_s": statistics.median(rates),
           "first_loss": steps_logged[0]["loss"], "val_loss": result["val_loss"],
           "first_val": evals[0]["val_loss"],
           "clipped_steps": sum(g > config.train.grad_clip for g in grad_norms),
           "max_grad_norm": max(grad_norms), "last_grad_norm": grad_norms[-1],
           "threads": S["threads"], "samples": samples},
          open("pretraining.json", "w"), indent=1)
workdir.cleanup()
