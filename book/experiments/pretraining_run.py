# %% [markdown]
# # Pretraining the book's model on CPU
#
# The book's model is trained once per build by `book_model.py`: a slice of the
# default corpus (Python's standard library) with a 2048-token vocabulary, and a
# small Llama-style GPT trained on it with the real training loop
# (`llm_reference.train.train`: AdamW, warmup + cosine schedule, clipping,
# evaluations, checkpoints). Here we look at that run: its config, the loss curve,
# the throughput, what it wrote and a few samples. We also draw the two
# learning-rate schedules, cosine and WSD.

# %%
import json
import math
import statistics

import matplotlib.pyplot as plt
import torch

from llm_reference.checkpoint import list_checkpoints, load_model
from llm_reference.config import RunConfig, load_toml
from llm_reference.data import load_meta
from llm_reference.generate import generate
from llm_reference.metrics_plot import read_metrics
from llm_reference.optim import param_groups
from llm_reference.quickstart import book_model
from llm_reference.schedule import lr_at

BOOK = {"timeout": 300, "seed": 1337, "needs": ["book_model"],
        "settings": {"threads": 2, "sample_tokens": 60,
                     "prompts": ["def ", "import os\n", "class "]}}
S = BOOK["settings"]
torch.set_num_threads(S["threads"])
# the book's model (run/, data/, summary): book_model.py wrote it; the builder
# says where in BOOK_MODEL_DIR
book = book_model()
run_dir, data_dir = book.run, book.data
summary = book.summary
config = RunConfig.from_dict(load_toml(run_dir / "config.toml"))
T = config.train

# %% [markdown]
# ## The learning-rate schedules
#
# `lr_at` for the run's numbers, cosine and warmup-stable-decay (WSD) with its
# default `decay_frac = 0.2`.

# %% tags=["schedule"]
shape = {"lr": T.lr, "min_lr": T.min_lr, "warmup_steps": T.warmup_steps,
         "max_steps": T.max_steps}
steps = list(range(T.max_steps))
curves = {name: [lr_at(s, schedule=name, **shape) for s in steps]
          for name in ("cosine", "wsd")}
n = T.max_steps
for s in (0, T.warmup_steps - 1, T.warmup_steps, n // 2, int(0.8 * n),
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
# What `prepare` (the dataset step) wrote for the book's model.

# %% tags=["data"]
meta = load_meta(data_dir)
print(f"{meta['train_tokens']:,} training and {meta['val_tokens']:,} validation "
      f"tokens, vocabulary {meta['vocab_size']:,}")

# %% [markdown]
# ## The run
#
# `book_model.py` calls `train(config, run_dir)` with this config (the run's
# config.toml, less the data folder); here is the config and what the run logged.

# %% tags=["checkpoint"]
shown = config.to_dict()
shown["train"] = {k: v for k, v in shown["train"].items()
                  if k in ("batch_size", "max_steps", "lr", "min_lr", "warmup_steps",
                           "schedule", "weight_decay", "grad_clip", "seed")}
for table, fields in shown.items():
    print(f"[{table}] " + ", ".join(f"{k}={v}" for k, v in fields.items()
                                    if v is not None))
records = read_metrics(run_dir / "metrics.jsonl")
rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
evals = [r for r in records if "val_loss" in r]
tokens = T.max_steps * T.batch_size * config.model["context_length"]
print(f"trained {tokens:,} tokens in {T.max_steps} steps: final val loss "
      f"{evals[-1]['val_loss']:.3f} (perplexity {math.exp(evals[-1]['val_loss']):.1f})"
      f", median {statistics.median(rates):,.0f} tokens/s")
print("checkpoints:", ", ".join(p.name for p in list_checkpoints(run_dir)))

# %% [markdown]
# ## What the run wrote

# %% tags=["files"]
model, tokenizer, state = load_model(run_dir)
groups = param_groups(model, T.weight_decay)
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

# %% [markdown]
# ## Greedy completions (book_model.py's, cut at a blank line)

# %% tags=["greedy"]
for sample in summary["samples"]:
    prompt = sample["prompt"]
    print(f"--- prompt {prompt!r}\n{prompt}{sample['completion']}\n")

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
ax.text(T.max_steps, math.log(meta["vocab_size"]) + 0.05, "ln V", ha="right",
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
           "max_steps": T.max_steps, "warmup_steps": T.warmup_steps,
           "batch_size": T.batch_size, "lr": T.lr, "min_lr": T.min_lr,
           "model": config.model,
           "params": model.num_parameters(),
           "non_embedding": model.num_parameters(non_embedding=True),
           "flops_per_token": model.flops_per_token(),
           "tokens_per_s": statistics.median(rates),
           "first_loss": steps_logged[0]["loss"], "val_loss": evals[-1]["val_loss"],
           "first_val": evals[0]["val_loss"],
           "clipped_steps": sum(g > T.grad_clip for g in grad_norms),
           "max_grad_norm": max(grad_norms), "last_grad_norm": grad_norms[-1],
           "threads": summary["threads"], "samples": samples},
          open("pretraining.json", "w"), indent=1)
