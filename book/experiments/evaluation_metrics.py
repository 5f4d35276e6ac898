# %% [markdown]
# # Evaluating a small GPT on held-out text
#
# A slice of the default corpus (2048-token vocabulary), a small GPT trained for
# about half a minute with the real training loop, and every metric of `evaluate.py`
# on the validation split: loss, perplexity, bits per byte, next-token accuracy and
# the cloze benchmark, for an untrained model, an early checkpoint and the last one.
# Last, a contamination check: how many validation 13-grams occur in training.

# %%
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from llm_reference.config import load_config
from llm_reference.data import Batches, load_meta, load_tokenizer
from llm_reference.evaluate import (
    build_cloze,
    cloze_accuracy,
    evaluate_run,
    language_model_metrics,
)
from llm_reference.model import GPT, ModelConfig
from llm_reference.quickstart import tiny_data
from llm_reference.train import train

BOOK = {"timeout": 300, "seed": 1337,
        "settings": {"max_bytes": 1_500_000, "vocab_size": 2048, "val_fraction": 0.05,
                     "context_length": 64, "max_steps": 150, "early_step": 50,
                     "eval_batches": 10, "cloze_items": 100, "choices": 4,
                     "ngram": 13, "threads": 2}}
S = BOOK["settings"]
torch.set_num_threads(S["threads"])
workdir = tempfile.TemporaryDirectory()
run_dir = Path(workdir.name) / "run"
cpu = torch.device("cpu")

# %% [markdown]
# ## Data and a short training run

# %% tags=["train"]
data_dir = tiny_data(max_bytes=S["max_bytes"], vocab_size=S["vocab_size"],
                     val_fraction=S["val_fraction"])  # `prepare`, cached
meta = load_meta(data_dir)
config = load_config("small", overrides=[
    f"train.data_dir={json.dumps(str(data_dir))}", 'train.device="cpu"',
    f"model.context_length={S['context_length']}",
    f"train.max_steps={S['max_steps']}", "train.warmup_steps=15",
    "train.eval_interval=50", f"train.eval_steps={S['eval_batches']}",
    f"train.checkpoint_interval={S['early_step']}", "train.keep_last=3"])
result = train(config, run_dir)
print(f"{meta['train_tokens']:,} training / {meta['val_tokens']:,} validation "
      f"tokens; trained {S['max_steps']} steps "
      f"({S['max_steps'] * 16 * S['context_length']:,} tokens), "
      f"val loss {result['val_loss']:.3f}")

# %% [markdown]
# ## Every metric, at three points of training
#
# The untrained model is a fresh `GPT` with the run's config, measured with the same
# functions (`language_model_metrics`, `build_cloze`, `cloze_accuracy`) that
# `evaluate_run` calls for the checkpoints.

# %% tags=["checkpoint"]
tokenizer = load_tokenizer(data_dir)
torch.manual_seed(BOOK["seed"])
untrained = GPT(ModelConfig(**{**config.model, "vocab_size": meta["vocab_size"]}))
val = Batches(data_dir, "val", 16, S["context_length"], seed=config.train.seed)
windows = Batches(data_dir, "val", 2 * S["cloze_items"], S["context_length"],
                  seed=config.train.seed + 1)
items = build_cloze([tokenizer.decode(r) for r in windows.get(0)[0].tolist()],
                    S["cloze_items"], S["choices"], seed=config.train.seed)
rows = [{"model": "untrained",
         **language_model_metrics(untrained, tokenizer, val, S["eval_batches"], cpu),
         "cloze": cloze_accuracy(untrained, tokenizer, items, cpu)}]
for step in (S["early_step"], S["max_steps"]):
    r = evaluate_run(run_dir, step=step, n_batches=S["eval_batches"],
                     n_cloze=S["cloze_items"], n_choices=S["choices"], device="cpu")
    rows.append({"model": f"step {step}", **r})
print(f"{'':10} {'loss':>6} {'ppl':>8} {'bits/B':>7} {'acc':>6} {'cloze':>6}")
for r in rows:
    print(f"{r['model']:10} {r['val_loss']:6.3f} {r['perplexity']:8.1f} "
          f"{r['bits_per_byte']:7.3f} {r['accuracy']:6.1%} "
          f"{r['cloze']['accuracy']:6.1%}")
print(f"cloze: {rows[-1]['cloze']['items']} items, chance "
      f"{rows[-1]['cloze']['chance']:.0%}")

# %% [markdown]
# ## Bits per byte by hand, and one cloze item

# %% tags=["bpb"]
last = rows[-1]
print(f"{last['tokens']:,} tokens decode to {last['bytes']:,} bytes: "
      f"{last['bytes'] / last['tokens']:.2f} bytes/token")
print(f"bits/byte = {last['val_loss']:.4f} x {last['tokens']:,} / "
      f"({last['bytes']:,} x ln 2) = "
      f"{last['val_loss'] * last['tokens'] / (last['bytes'] * math.log(2)):.4f}")
item = items[0]
print("cloze context (last 3 lines):")
print("\n".join("  | " + line for line in item.context.split("\n")[-3:]) + "____")
print(f"choices {item.choices}, answer {item.choices[item.answer]!r}")

# %% [markdown]
# ## Contamination: validation 13-grams found in the training shards
#
# Each window of 13 token ids gets a 64-bit polynomial hash; we count how many
# validation windows have a hash that occurs in the training split.

# %% tags=["contamination"]
def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A uint64 hash of every window of n consecutive ids (wrapping arithmetic)."""
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    for j in range(n):
        h = h * np.uint64(1_000_003) + ids[j:len(ids) - n + 1 + j].astype(np.uint64)
    return h


def split_ids(split: str) -> np.ndarray:
    return np.concatenate([np.fromfile(data_dir / s["file"], dtype="<u2")
                           for s in meta["shards"][split]])


train_h = np.unique(ngram_hashes(split_ids("train"), S["ngram"]))
val_h = ngram_hashes(split_ids("val"), S["ngram"])
overlap = float(np.isin(val_h, train_h).mean())
print(f"{overlap:.1%} of {len(val_h):,} validation {S['ngram']}-grams occur in the "
      f"{len(train_h):,} distinct training {S['ngram']}-grams")

# %%
json.dump({"rows": [{k: v for k, v in r.items() if k in (
               "model", "val_loss", "perplexity", "bits_per_byte", "accuracy",
               "tokens", "bytes")} | {"cloze": r["cloze"]["accuracy"]} for r in rows],
           "chance": rows[-1]["cloze"]["chance"], "items": len(items),
           "vocab_size": meta["vocab_size"], "max_steps": S["max_steps"],
           "context_length": S["context_length"], "overlap": overlap,
           "ngram": S["ngram"], "eval_batches": S["eval_batches"]},
          open("evaluation.json", "w"), indent=1)
workdir.cleanup()
