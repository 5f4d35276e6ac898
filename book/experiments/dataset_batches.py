# %% [markdown]
# # Shards on disk, windows in memory
#
# We prepare a small slice of the default corpus (2 MB of the standard library, a
# 512-token vocabulary, shards of at most 200,000 tokens so that there are several),
# look at what `prepare` wrote, draw batches from it with `Batches`, check that a
# batch depends only on its index, and measure how much of the training text random
# windows cover, and how fast they are read.

# %%
import json
import math
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from llm_reference.data import (
    Batches,
    PrepareSettings,
    load_meta,
    load_tokenizer,
    prepare,
)
from llm_reference.plan import TRACKS, make_plan

BOOK = {"timeout": 300, "seed": 0,
        "settings": {"max_bytes": 2_000_000, "vocab_size": 512, "val_fraction": 0.1,
                     "shard_tokens": 200_000, "batch_size": 4, "context_length": 16,
                     "coverage_tokens": 64_000, "coverage_epochs": 4}}
S = BOOK["settings"]
torch.set_num_threads(1)

workdir = tempfile.TemporaryDirectory()  # the shards are not kept with the book
data_dir = Path(workdir.name) / "stdlib-512"
settings = PrepareSettings(vocab_size=S["vocab_size"], max_bytes=S["max_bytes"],
                           val_fraction=S["val_fraction"],
                           shard_tokens=S["shard_tokens"])
summary = prepare(settings, data_dir, workers=1)

# %% tags=["files"]
meta = load_meta(data_dir)  # also checks every shard's size against meta.json
for path in sorted(data_dir.iterdir()):
    print(f"{path.name:15} {path.stat().st_size:>10,} bytes")
text_bytes = sum(r.kept_bytes for r in summary["records"])
shard_bytes = sum(p.stat().st_size for p in data_dir.glob("*.bin"))
tokens = meta["train_tokens"] + meta["val_tokens"]
print(f"vocab {meta['vocab_size']}, dtype {meta['dtype']}, documents "
      f"{meta['documents']['train']} train / {meta['documents']['val']} val")
print(f"tokens {meta['train_tokens']:,} train / {meta['val_tokens']:,} val")
print(f"text {text_bytes:,} bytes, shards {shard_bytes:,} bytes: "
      f"{text_bytes / tokens:.2f} and {shard_bytes / tokens:.0f} bytes per token")

# %% [markdown]
# A batch: B windows of T + 1 consecutive tokens; x is the first T, y the last T.
# The same index always gives the same batch, on any object with the same seed.

# %% tags=["checkpoint"]
batches = Batches(data_dir, "train", batch_size=S["batch_size"],
                  context_length=S["context_length"], seed=BOOK["seed"])
x, y = batches.get(0)  # (B, T) int64 each
tok = load_tokenizer(data_dir)
print("x", tuple(x.shape), x.dtype, " y", tuple(y.shape), y.dtype)
print("x[0]:", "|".join(tok.decode([i]) for i in x[0].tolist()).replace("\n", "⏎"))
print("y[0]:", "|".join(tok.decode([i]) for i in y[0].tolist()).replace("\n", "⏎"))
assert torch.equal(x[:, 1:], y[:, :-1])  # y is x moved on by one token
again = Batches(data_dir, "train", S["batch_size"], S["context_length"],
                seed=BOOK["seed"])
print("get(7) == get(7) on a new object:", torch.equal(batches.get(7)[0],
                                                        again.get(7)[0]))
rank1 = Batches(data_dir, "train", S["batch_size"], S["context_length"],
                seed=BOOK["seed"], rank=1, world_size=2)
print("rank 1's get(7) differs from rank 0's:",
      not torch.equal(batches.get(7)[0], rank1.get(7)[0]))

# %% [markdown]
# ## Coverage
#
# Random windows are drawn with replacement. How much of the training text do they
# cover after one epoch's worth of tokens? We write a folder whose token ids are
# their own positions (4 shards, 64,000 tokens, ids below 2^16), so that the first
# token of every window says where it starts, and count the positions covered.

# %%
def numbered_folder(folder: Path, n_tokens: int, n_shards: int) -> None:
    """A prepared-data folder whose token at global position p is p."""
    folder.mkdir()
    ids = np.arange(n_tokens, dtype="<u2")
    shards = []
    for s, part in enumerate(np.array_split(ids, n_shards)):
        name = f"train_{s:03d}.bin"
        part.tofile(folder / name)
        shards.append({"file": name, "tokens": len(part)})
    meta = {"vocab_size": 2**16, "dtype": "uint16", "tokenizer": "tokenizer.json",
            "train_tokens": n_tokens, "val_tokens": 0,
            "shards": {"train": shards, "val": []}}
    (folder / "meta.json").write_text(json.dumps(meta))


N = S["coverage_tokens"]
numbered = Path(workdir.name) / "numbered"
numbered_folder(numbered, N, 4)
B, T = 16, 64
sampler = Batches(numbered, "train", B, T, seed=BOOK["seed"])
seen = np.zeros(N, dtype=np.int32)  # how many windows read each position
steps_per_epoch = N / (B * T)
epochs, covered = [], []
for index in range(int(S["coverage_epochs"] * steps_per_epoch)):
    x, y = sampler.get(index)
    for start in x[:, 0].tolist():  # a window reads positions start .. start + T
        seen[start:start + T + 1] += 1
    epochs.append((index + 1) / steps_per_epoch)
    covered.append(float((seen > 0).mean()))
one_epoch = int(round(steps_per_epoch))
print(f"after one epoch ({one_epoch} batches of {B} x {T}): "
      f"{covered[one_epoch - 1]:.1%} of positions seen, "
      f"theory 1 - 1/e = {1 - math.exp(-1):.1%}")
print(f"after {S['coverage_epochs']} epochs: {covered[-1]:.1%}, "
      f"theory {1 - math.exp(-S['coverage_epochs']):.1%}")

# %% [markdown]
# ## Speed
#
# Reading windows from a memory map against tokenizing text on the fly: tokens per
# second of each, measured here (on a shared machine: take the ratio, not the
# absolute numbers, and even that only roughly).

# %% tags=["speed"]
big = Batches(data_dir, "train", batch_size=16, context_length=256, seed=1)
start = time.perf_counter()
n_batches = 200
for index in range(n_batches):
    big.get(index)
read_rate = n_batches * 16 * 256 / (time.perf_counter() - start)
texts = [tok.decode(big.get(i)[0][0].tolist()) for i in range(40)]
start = time.perf_counter()
encoded = sum(len(tok.encode(t)) for t in texts)
encode_rate = encoded / (time.perf_counter() - start)
print(f"memory-mapped windows: {read_rate:12,.0f} tokens/s")
print(f"tokenizing on the fly: {encode_rate:12,.0f} tokens/s "
      f"({read_rate / encode_rate:,.0f}x slower)")
need = {}
for track, spec in TRACKS.items():  # what each track's first plan trains on
    plan = make_plan(spec.budgets[0], track)
    need[track] = plan.tokens / plan.seconds
    print(f"{track} plan ({spec.budgets[0]}) trains on {need[track]:10,.0f} tokens/s")

# %%
json.dump({"meta": {k: meta[k] for k in ("vocab_size", "dtype", "train_tokens",
                                         "val_tokens", "documents", "shards")},
           "text_bytes": text_bytes, "shard_bytes": shard_bytes,
           "coverage": {"epochs": epochs, "covered": covered,
                        "one_epoch": covered[one_epoch - 1], "final": covered[-1]},
           "read_rate": read_rate, "encode_rate": encode_rate, "need": need,
           "batch": S["batch_size"], "context": S["context_length"]},
          open("dataset.json", "w"), indent=1)
fig, ax = plt.subplots(figsize=(6, 2.6))
grid = np.linspace(0, S["coverage_epochs"], 200)
ax.plot(epochs, covered, color="#0969da", linewidth=2.5, alpha=0.6,
        label="Batches, measured")
ax.plot(grid, 1 - np.exp(-grid), color="#1f2328", linestyle="--", linewidth=0.9,
        label="1 − exp(−epochs)")
ax.set_xlabel("tokens drawn, in epochs (multiples of the training set)")
ax.set_ylabel("positions seen")
ax.set_ylim(0, 1.02)
ax.legend(frameon=False, loc="lower right")
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("coverage.svg")
workdir.cleanup()
