# %% [markdown]
# # Decoding the book's model
#
# The book's model (`book_model.py`: a small GPT pretrained on the standard library)
# decodes the same prompt greedily, with temperatures, with top-k and with top-p;
# we measure how repetitive and how surprising each strategy's text is, and time
# generation with and without the KV cache.

# %%
import json
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from llm_reference.checkpoint import load_model
from llm_reference.data import Batches
from llm_reference.evaluate import mean_loss
from llm_reference.generate import generate, generate_text, top_k_filter, top_p_filter
from llm_reference.quickstart import book_model

BOOK = {"timeout": 600, "seed": 0, "needs": ["book_model"],
        "settings": {"prompt": "    def __init__(self, name, size):\n",
                     "new_tokens": 40, "sample_tokens": 60, "samples": 6,
                     "batch_size": 16, "cache_tokens": 100}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])
torch.set_num_threads(1)

# the book's model (run/, data/, summary): book_model.py wrote it; the builder
# says where in BOOK_MODEL_DIR
book = book_model()
run_dir, data_dir = book.run, book.data
summary = book.summary
model, tok, _ = load_model(run_dir)
T = model.config.context_length
val = Batches(data_dir, "val", S["batch_size"], T, seed=BOOK["seed"])
val_loss = mean_loss(model, val, range(8), torch.device("cpu"))
print(f"the book's model: {model.num_parameters():,} parameters, context {T}, "
      f"validation loss {val_loss:.3f}")

# %% [markdown]
# ## One prompt, five strategies

# %% tags=["checkpoint"]
prompt = tok.encode(S["prompt"])
strategies = {"greedy": dict(temperature=0.0),
              "T = 0.7": dict(temperature=0.7),
              "top-k 40": dict(temperature=1.0, top_k=40),
              "top-p 0.9": dict(temperature=1.0, top_p=0.9),
              "T = 1.5": dict(temperature=1.5)}
for name, options in strategies.items():
    new = list(generate(model, prompt, S["new_tokens"], seed=1, **options))
    text = S["prompt"] + tok.decode(new)
    # control characters (a form feed, say) as U+FFFD, so that they show
    text = "".join(c if c.isprintable() or c == "\n" else "\ufffd" for c in text)
    print(f"--- {name}")
    print(text)

# %% [markdown]
# ## The next-token distribution after the prompt

# %% tags=["distribution"]
with torch.no_grad():
    logits = model(torch.tensor([prompt]))[0][0, -1]  # (V,)
probs = {t: F.softmax(logits / t, -1).sort(descending=True).values
         for t in (0.7, 1.0, 1.5)}
kept_k = int(torch.isfinite(top_k_filter(logits, 40)).sum())
kept_p = int(torch.isfinite(top_p_filter(logits, 0.9)).sum())
top = F.softmax(logits, -1).topk(5)
print("most likely next tokens:", ", ".join(
    f"{tok.decode([i])!r} {p:.2f}" for p, i in zip(top.values.tolist(),
                                                    top.indices.tolist())))
print(f"top-k 40 keeps {kept_k} tokens; top-p 0.9 keeps {kept_p} of {len(logits)}")

# %% [markdown]
# ## Repetition and surprise
#
# Six prompts (the first 8 tokens of six validation windows), 60 new tokens
# each, per strategy. "Repeated 4-grams": the share of the text's 4-token sequences
# that already occurred earlier in it. "Surprise": the model's own mean negative
# log-likelihood of the new tokens at temperature 1, in nats; held-out text scores
# its validation loss.

# %% tags=["quality"]
@torch.no_grad()
def surprise(ids: list[int], n_prompt: int) -> float:
    """Mean -log p(token) of ids[n_prompt:] under the model (temperature 1)."""
    logits, _ = model(torch.tensor([ids]))  # (1, T, V)
    logp = F.log_softmax(logits[0, :-1], -1)  # (T - 1, V): predicts ids[1:]
    targets = torch.tensor(ids[1:])
    nll = -logp.gather(-1, targets[:, None])[:, 0]  # (T - 1,)
    return nll[n_prompt - 1:].mean().item()


def repeated_4grams(ids: list[int]) -> float:
    grams = [tuple(ids[i:i + 4]) for i in range(len(ids) - 3)]
    return 1 - len(set(grams)) / len(grams)


prompts = [val.get(i)[0][0, :8].tolist() for i in range(S["samples"])]
quality = []
for name, options in strategies.items():
    reps, nlls = [], []
    for i, p in enumerate(prompts):
        new = list(generate(model, p, S["sample_tokens"], seed=i, **options))
        reps.append(repeated_4grams(new))
        nlls.append(surprise(p + new, len(p)))
    quality.append({"strategy": name, "repeated": sum(reps) / len(reps),
                    "surprise": sum(nlls) / len(nlls)})
    print(f"{name:9} repeated 4-grams {quality[-1]['repeated']:5.1%}   "
          f"surprise {quality[-1]['surprise']:.2f} nats/token")
print(f"held-out text: surprise {val_loss:.2f} nats/token (the validation loss)")
closest = min(quality, key=lambda q: abs(q["surprise"] - val_loss))["strategy"]

# %% [markdown]
# A stop string: generation ends before the first "\n", which is not part of the
# text; the model would have gone on for up to 100 tokens.

# %% tags=["stop"]
line = "    def __init__(self, name):\n        self.name"
pieces = list(generate_text(model, tok, tok.encode(line), 100, stop=["\n"],
                            temperature=0.0))
print(repr(line + "".join(pieces)), f"({len(pieces)} pieces streamed)")

# %% [markdown]
# ## The KV cache
#
# 100 greedy tokens after a 16-token prompt (116 of the model's 128 positions),
# with and without the cache: the same tokens, and the time each one took, the
# best of five runs (the build machine may be shared: the ratio is what to read).

# %% tags=["cache"]
def timed(use_cache: bool) -> tuple[list[int], list[float]]:
    """The tokens of one greedy run and the seconds each one took."""
    times, ids = [], []
    tick = time.perf_counter()
    for token in generate(model, long_prompt, S["cache_tokens"], temperature=0.0,
                          use_cache=use_cache):
        now = time.perf_counter()
        times.append(now - tick)
        tick = now
        ids.append(token)
    return ids, times


long_prompt = val.get(9)[0][0, :16].tolist()
runs = {}
for use_cache in (True, False):
    results = [timed(use_cache) for _ in range(5)]
    best = [min(ts) for ts in zip(*(times for _, times in results))]
    runs[use_cache] = {"ids": results[0][0], "times": best}
same = runs[True]["ids"] == runs[False]["ids"]
rates = {c: len(r["times"]) / sum(r["times"]) for c, r in runs.items()}
print(f"identical tokens with and without the cache: {same}")
print(f"with cache    {rates[True]:7.1f} tokens/s")
print(f"without cache {rates[False]:7.1f} tokens/s  "
      f"(the cache is {rates[True] / rates[False]:.1f}x faster)")
assert same

# %%
json.dump({"val_loss": val_loss, "quality": quality, "closest": closest,
           "kept_k": kept_k, "kept_p": kept_p, "prompt": S["prompt"],
           "new_tokens": S["new_tokens"], "cache_tokens": S["cache_tokens"],
           "context_length": T, "tokens_trained": summary["tokens_trained"],
           "rates": {"cache": rates[True], "no_cache": rates[False]},
           "parameters": model.num_parameters()},
          open("generation.json", "w"), indent=1)
fig, ax = plt.subplots(figsize=(6, 2.6))
for t, color in zip(probs, ("#0969da", "#57606a", "#bc4c00")):
    ax.plot(range(1, len(probs[t]) + 1), probs[t], color=color,
            label=f"temperature {t}")
ax.axvline(kept_k, color="#8250df", linestyle="--", linewidth=0.8)
ax.text(kept_k * 1.08, 0.3, "top-k 40", fontsize=8, color="#8250df")
ax.axvline(kept_p, color="#2da44e", linestyle="--", linewidth=0.8)
ax.text(kept_p * 1.08, 0.12, "top-p 0.9 (T = 1)", fontsize=8, color="#2da44e")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("rank of the next token")
ax.set_ylabel("probability")
ax.legend(frameon=False, loc="lower left")
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("next_token.svg")

fig, ax = plt.subplots(figsize=(6, 2.6))
for use_cache, color, label in ((False, "#bc4c00", "without cache"),
                                (True, "#0969da", "with KV cache")):
    ms = [1000 * t for t in runs[use_cache]["times"]]
    ax.plot(range(len(long_prompt), len(long_prompt) + len(ms)), ms, color=color,
            linewidth=0.9, label=label)
ax.set_xlabel("sequence length when the token is generated")
ax.set_ylabel("ms per token")
ax.set_ylim(bottom=0)
ax.legend(frameon=False)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("kv_cache.svg")
