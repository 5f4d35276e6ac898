# %% [markdown]
# # The book's model
#
# One small Llama-style GPT, trained once per build on the default corpus (Python's
# standard library), that every chapter after pretraining starts from: evaluation,
# decoding, fine-tuning, preference tuning, the release. The builder caches it like
# any experiment; an experiment that declares `"needs": ["book_model"]` runs after
# it, finds this folder in the environment variable BOOK_MODEL_DIR, and is re-run
# when the model changes. By hand: run this file first, then the others in the same
# folder (or with BOOK_MODEL_DIR set to this one).
#
# What it writes, in its own folder: `data/` (what `prepare` wrote: tokenizer.json,
# shards, manifest), `run/` (what `train` wrote: config.toml, checkpoints,
# metrics.jsonl) and `book_model.json` (the numbers the chapters quote).
#
# The shape is chosen for quality per CPU-second on two cores: a 2048-token
# vocabulary (a larger one costs more in the output layer than it saves in tokens at
# this width), a 128-token context (a function's signature and first lines), four
# layers of width 128 in the Llama recipe, 16 sequences a step (small batches, many
# steps: better per token at this scale), about one pass over 10 MB of the library,
# and the learning rate that a short sweep of runs found best at this size. Training
# saves a checkpoint every 200 steps (the evaluation chapter reads an early one);
# the builder keeps the folder of an interrupted run (`resume`), and the next build
# continues from the last checkpoint, on the same loss trajectory.

# %%
import json
import math
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

from llm_reference.checkpoint import list_checkpoints, load_model
from llm_reference.config import RunConfig
from llm_reference.data import PrepareSettings, load_meta, prepare
from llm_reference.generate import generate
from llm_reference.metrics_plot import read_metrics
from llm_reference.train import train

BOOK = {"timeout": 3600, "seed": 1337, "resume": True,
        "settings": {"max_bytes": 10_000_000, "vocab_size": 2048,
                     "val_fraction": 0.04, "threads": 2,
                     "model": {"context_length": 128, "n_layer": 4, "n_head": 4,
                               "d_model": 128, "position": "rope",
                               "norm": "rmsnorm", "mlp": "swiglu", "bias": False,
                               "tie_weights": True},
                     "train": {"batch_size": 16, "max_steps": 1800, "lr": 2e-3,
                               "min_lr": 2e-4, "warmup_steps": 50,
                               "eval_interval": 100, "eval_steps": 10,
                               "checkpoint_interval": 300,
                               "checkpoint_minutes": 0.0, "keep_last": 6},
                     "prompts": ["    def __init__(self, name):\n",
                                 "    def __init__(self, name):\n        self.name",
                                 "if __name__ ==",
                                 "    def __repr__(self):\n",
                                 "import os\nimport",
                                 "def read_file(path):\n"],
                     "sample_tokens": 32}}
S = BOOK["settings"]
torch.set_num_threads(S["threads"])
data_dir, run_dir = Path("data").resolve(), Path("run").resolve()

# %% [markdown]
# ## Data: the standard library, prepared once
#
# `prepare` (the dataset step) with the `hf` encoder: Hugging Face `tokenizers` on
# the same tokenizer.json, the same ids as the Python one.

# %% tags=["data"]
settings = PrepareSettings(max_bytes=S["max_bytes"], vocab_size=S["vocab_size"],
                           val_fraction=S["val_fraction"], seed=BOOK["seed"],
                           encoder="hf")
start = time.perf_counter()
if not (data_dir / "manifest.json").is_file():
    prepare(settings, data_dir, workers=S["threads"])
prepare_s = time.perf_counter() - start
meta = load_meta(data_dir)
print(f"{meta['train_tokens']:,} training and {meta['val_tokens']:,} validation "
      f"tokens, vocabulary {meta['vocab_size']:,} ({prepare_s:.0f} s)")

# %% [markdown]
# ## Train (or resume) the run

# %% tags=["train"]
config = RunConfig.from_dict({
    "model": {"vocab_size": "auto", **S["model"]},
    "train": {**S["train"], "data_dir": str(data_dir), "device": "cpu",
              "seed": BOOK["seed"]}})
resume = bool(list_checkpoints(run_dir)) if run_dir.is_dir() else False
start = time.perf_counter()
result = train(config, run_dir, resume=resume)
train_s = time.perf_counter() - start
records = read_metrics(run_dir / "metrics.jsonl")
losses = [r for r in records if "loss" in r]
evals = [r for r in records if "val_loss" in r]
rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
tokens = (config.train.max_steps * config.train.batch_size
          * config.model["context_length"])
print(f"{tokens:,} tokens in {config.train.max_steps} steps "
      f"({'resumed, ' if resume else ''}{train_s:.0f} s this time); "
      f"val loss {evals[0]['val_loss']:.2f} -> {result['val_loss']:.3f}")

# %% [markdown]
# ## Greedy completions of a few signatures
#
# Each prompt ends where a token ends: "if __name__ == " with its space would end
# inside the token ' "', a text the model never saw cut that way.

# %% tags=["samples"]
model, tokenizer, state = load_model(run_dir)
samples = []
for prompt in S["prompts"]:
    new = generate(model, tokenizer.encode(prompt), S["sample_tokens"],
                   temperature=0.0)
    completion = tokenizer.decode(list(new)).split("\n\n")[0]  # up to a blank line
    samples.append({"prompt": prompt, "completion": completion})
    print(f"--- {prompt!r}\n{prompt}{completion}\n")

# %%
summary = {
    "model": asdict(model.config), "train": S["train"],
    "params": model.num_parameters(),
    "non_embedding": model.num_parameters(non_embedding=True),
    "flops_per_token": model.flops_per_token(),
    "train_tokens": meta["train_tokens"], "val_tokens": meta["val_tokens"],
    "vocab_size": meta["vocab_size"], "tokens_trained": tokens,
    "tokens_per_s": statistics.median(rates), "threads": S["threads"],
    "train_seconds": round(train_s), "resumed": resume,
    "first_loss": losses[0]["loss"], "val_loss": result["val_loss"],
    "val_curve": [[r["step"], r["val_loss"]] for r in evals],
    "ln_vocab": math.log(meta["vocab_size"]), "samples": samples,
}
with open("book_model.json", "w") as f:
    json.dump(summary, f, indent=1)
print(f"{summary['params']:,} parameters, median {summary['tokens_per_s']:,.0f} "
      "tokens/s")
