# %% [markdown]
# # The loss: what its numbers mean
#
# Cross-entropy at initialisation is ln V; computed naively it overflows, computed
# with the log-sum-exp trick it does not; its gradient is softmax minus one-hot. On a
# small slice of the standard library (512-token vocabulary) we compute the loss of
# three models that need no training (uniform, unigram and bigram counts) and train
# a small GPT for a few hundred steps against them.

# %%
import json
import lzma
import math
import zlib

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from llm_reference.data import Batches, load_meta, load_tokenizer
from llm_reference.evaluate import mean_loss
from llm_reference.model import GPT, ModelConfig
from llm_reference.quickstart import tiny_data

BOOK = {"timeout": 300, "seed": 0,
        "settings": {"max_bytes": 2_000_000, "vocab_size": 512, "val_fraction": 0.1,
                     "steps": 800, "eval_every": 50, "eval_batches": 4,
                     "batch_size": 32, "context_length": 32, "lr": 6e-3,
                     "bigram_smoothing": 0.1}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])
torch.set_num_threads(1)

# %% [markdown]
# ## At initialisation the loss is ln V

# %% tags=["checkpoint"]
for V in (256, 512, 8192, 50304):
    model = GPT(ModelConfig(vocab_size=V, context_length=64, n_layer=2, n_head=4,
                            d_model=64))
    idx = torch.randint(0, V, (8, 64))
    with torch.no_grad():
        logits, _ = model(idx)  # with targets the model returns the loss alone
        _, loss = model(idx, targets=torch.randint(0, V, (8, 64)))
    print(f"V = {V:6,}: loss {loss.item():.3f}, ln V = {math.log(V):.3f}, "
          f"logits std {logits.std():.3f}, perplexity {loss.exp().item():8,.0f}")

# %% [markdown]
# ## Computing it stably
#
# `naive` takes the softmax, then the log; `stable` subtracts the largest logit
# first (log-sum-exp). With logits in the thousands, exp overflows float32.

# %% tags=["stable"]
def naive(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    probs = logits.exp() / logits.exp().sum(-1, keepdim=True)  # (N, V)
    return -probs.log().gather(-1, targets[:, None]).mean()


def stable(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    top = logits.max(-1, keepdim=True).values  # (N, 1)
    log_z = top[:, 0] + (logits - top).exp().sum(-1).log()  # (N,) log-sum-exp
    return (log_z - logits.gather(-1, targets[:, None])[:, 0]).mean()


logits, targets = torch.randn(6, 50), torch.randint(0, 50, (6,))
for scale in (1, 100, 1000):
    z = logits * scale
    print(f"logits x {scale:4}: naive {naive(z, targets).item():10.4f}   "
          f"stable {stable(z, targets).item():10.4f}   "
          f"F.cross_entropy {F.cross_entropy(z, targets).item():10.4f}")
z = logits.clone().requires_grad_()
F.cross_entropy(z, targets).backward()
expected = (F.softmax(logits, -1) - F.one_hot(targets, 50)) / len(targets)
print(f"gradient vs (softmax - one_hot) / N: max |difference| "
      f"{(z.grad - expected).abs().max():.1e}")
masked = targets.clone()
masked[:2] = -100  # the ignore index: these positions do not count
print(f"ignore_index=-100: {F.cross_entropy(logits, masked).item():.4f} = mean of "
      f"the other 4: {F.cross_entropy(logits[2:], targets[2:]).item():.4f}")

# %% [markdown]
# ## Baselines that need no training, and a small GPT
#
# Counts from the training split, loss on the validation split. The bigram model
# adds 0.1 to every count so that no pair has probability zero.

# %% tags=["baselines"]
data_dir = tiny_data(max_bytes=S["max_bytes"], vocab_size=S["vocab_size"],
                     val_fraction=S["val_fraction"])  # `prepare`, cached
meta = load_meta(data_dir)
V = meta["vocab_size"]
train = np.concatenate([np.fromfile(data_dir / s["file"], dtype="<u2")
                        for s in meta["shards"]["train"]]).astype(np.int64)
val = np.concatenate([np.fromfile(data_dir / s["file"], dtype="<u2")
                      for s in meta["shards"]["val"]]).astype(np.int64)
tok = load_tokenizer(data_dir)
val_text = tok.decode(val.tolist()).encode("utf-8")
val_bytes = len(val_text)

unigram = np.bincount(train, minlength=V) + 1.0
unigram /= unigram.sum()
pairs = np.full((V, V), S["bigram_smoothing"])
np.add.at(pairs, (train[:-1], train[1:]), 1.0)
bigram = pairs / pairs.sum(axis=1, keepdims=True)
baselines = {"uniform": math.log(V),
             "unigram": float(-np.log(unigram[val]).mean()),
             "bigram": float(-np.log(bigram[val[:-1], val[1:]]).mean())}
tokens_per_byte = len(val) / val_bytes
for name, loss in baselines.items():
    print(f"{name:8} loss {loss:.3f} nats/token, perplexity {math.exp(loss):6.1f}, "
          f"{loss * tokens_per_byte / math.log(2):.2f} bits/byte")
compressors = {"zlib -9": 8 * len(zlib.compress(val_text, 9)) / val_bytes,
               "lzma -9": 8 * len(lzma.compress(val_text, preset=9)) / val_bytes}
for name, bits in compressors.items():
    print(f"{name:8} {bits:.2f} bits/byte (the same validation text, compressed)")

# %%
config = ModelConfig(vocab_size=V, context_length=S["context_length"], n_layer=2,
                     n_head=4, d_model=64)
model = GPT(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=S["lr"], weight_decay=0.0)
train_batches = Batches(data_dir, "train", S["batch_size"], S["context_length"],
                        seed=BOOK["seed"])
val_batches = Batches(data_dir, "val", S["batch_size"], S["context_length"],
                      seed=BOOK["seed"])
cpu = torch.device("cpu")
curve = []  # (step, validation loss)
for step in range(S["steps"] + 1):
    if step % S["eval_every"] == 0:
        curve.append((step, mean_loss(model, val_batches, range(S["eval_batches"]),
                                      cpu)))
    if step == S["steps"]:
        break
    x, y = train_batches.get(step)
    _, loss = model(x, targets=y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

# %% tags=["trained"]
final = curve[-1][1]
print(f"GPT after {S['steps']} steps: validation loss {final:.3f}, perplexity "
      f"{math.exp(final):.1f}, {final * tokens_per_byte / math.log(2):.2f} bits/byte")
first_below = {}
for name in ("unigram", "bigram"):
    below = [s for s, loss in curve if loss < baselines[name]]
    first_below[name] = below[0] if below else None
    print(f"first below the {name} baseline: " + (f"at step {below[0]}" if below
                                              else "not yet"))
assert first_below["unigram"] is not None, "the GPT should beat unigram counts"

# %%
json.dump({"baselines": baselines, "compressors": compressors, "curve": curve,
           "tokens_per_byte": tokens_per_byte, "steps": S["steps"], "vocab_size": V,
           "eval_every": S["eval_every"], "first_below": first_below,
           "tokens_trained": S["steps"] * S["batch_size"] * S["context_length"],
           "final": {"loss": final, "perplexity": math.exp(final),
                     "bits_per_byte": final * tokens_per_byte / math.log(2)},
           "val_tokens": len(val), "val_bytes": val_bytes},
          open("objective.json", "w"), indent=1)
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.plot([s for s, _ in curve], [loss for _, loss in curve], marker="o",
        markersize=3, color="#0969da", label="small GPT, validation")
for (name, loss), color in zip(baselines.items(), ("#57606a", "#bc4c00", "#8250df")):
    ax.axhline(loss, color=color, linestyle="--", linewidth=0.9)
    ax.text(S["steps"], loss + 0.05, name, ha="right", va="bottom", fontsize=8,
            color=color)
ax.set_xlabel("training step")
ax.set_ylabel("cross-entropy (nats/token)")
ax.set_ylim(0, math.log(V) + 0.6)
ax.legend(frameon=False, loc="lower left")
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("loss_vs_baselines.svg")
