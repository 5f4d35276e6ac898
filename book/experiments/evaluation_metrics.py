# %% [markdown]
# # Evaluating the book's model on held-out text
#
# The book's model (`book_model.py`: a small GPT pretrained on the standard library)
# and every metric of `evaluate.py` on its validation split, which training never
# saw: loss, perplexity, bits per byte, next-token accuracy and the cloze benchmark,
# for an untrained model of the same shape, an early checkpoint and the last one,
# each accuracy with a 95 % confidence interval. Then the model against zlib and
# lzma on the same bytes, and a contamination check: how many validation 13-grams
# occur in training.

# %%
import json
import lzma
import math
import zlib

import matplotlib.pyplot as plt
import numpy as np
import torch

from llm_reference.checkpoint import list_checkpoints, load_model
from llm_reference.data import Batches, load_meta
from llm_reference.evaluate import build_cloze, cloze_accuracy, language_model_metrics
from llm_reference.model import GPT
from llm_reference.quickstart import book_model

BOOK = {"timeout": 1200, "seed": 1337, "needs": ["book_model"],
        "settings": {"batch_size": 16, "eval_batches": 10, "cloze_items": 300,
                     "choices": 4, "early_step": 300, "ngram": 13, "threads": 2,
                     "z": 1.96}}
S = BOOK["settings"]
torch.set_num_threads(S["threads"])
cpu = torch.device("cpu")
# the book's model (run/, data/, summary): book_model.py wrote it; the builder
# says where in BOOK_MODEL_DIR
book = book_model()
run_dir, data_dir = book.run, book.data
summary = book.summary
base, tokenizer, _ = load_model(run_dir)  # a fresh copy: change it freely
meta = load_meta(data_dir)
T = base.config.context_length


def wilson(right: int, n: int, z: float = S["z"]) -> tuple[float, float]:
    """The Wilson score interval of a proportion right / n (95 % for z = 1.96)."""
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# %% [markdown]
# ## Every metric, at three points of training
#
# The untrained model is a fresh `GPT` with the book model's config; the early and
# the last checkpoint come from its run folder. All three are measured with the same
# functions (`language_model_metrics`, `build_cloze`, `cloze_accuracy`) that
# `evaluate_run` calls, on the same validation batches and cloze items.

# %% tags=["checkpoint"]
torch.manual_seed(BOOK["seed"])
models = {"untrained": GPT(base.config).eval(),
          f"step {S['early_step']}": load_model(run_dir, S["early_step"])[0],
          f"step {summary['train']['max_steps']}": base}
val = Batches(data_dir, "val", S["batch_size"], T, seed=BOOK["seed"])
windows = Batches(data_dir, "val", 2 * S["cloze_items"], T, seed=BOOK["seed"] + 1)
items = build_cloze([tokenizer.decode(r) for r in windows.get(0)[0].tolist()],
                    S["cloze_items"], S["choices"], seed=BOOK["seed"])
rows = []
for name, model in models.items():
    metrics = language_model_metrics(model, tokenizer, val, S["eval_batches"], cpu)
    cloze = cloze_accuracy(model, tokenizer, items, cpu)
    right = round(cloze["accuracy"] * len(items))
    low, high = wilson(right, len(items))
    rows.append({"model": name, **metrics, "cloze": cloze["accuracy"],
                 "cloze_low": low, "cloze_high": high})
print(f"{'':10} {'loss':>6} {'ppl':>8} {'bits/B':>7} {'acc':>6}  cloze (95 % CI)")
for r in rows:
    print(f"{r['model']:10} {r['val_loss']:6.3f} {r['perplexity']:8.1f} "
          f"{r['bits_per_byte']:7.3f} {r['accuracy']:6.1%}  {r['cloze']:6.1%} "
          f"({r['cloze_low']:.1%}-{r['cloze_high']:.1%})")
print(f"cloze: {len(items)} items of {S['choices']} choices, chance "
      f"{1 / S['choices']:.0%}")

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
# ## The model against zlib and lzma, on the whole validation split
#
# The compressors get the split as one file (they may use matches anywhere in it);
# the model reads it in consecutive windows of its context length, each window's
# first tokens with little context. Both numbers are bits per byte of the same text.

# %% tags=["compressors"]
def split_ids(split: str) -> np.ndarray:
    return np.concatenate([np.fromfile(data_dir / s["file"], dtype="<u2")
                           for s in meta["shards"][split]])


class Consecutive:
    """The split cut into consecutive windows, `batch` windows per batch."""

    def __init__(self, ids: np.ndarray, batch: int):
        n = (len(ids) - 1) // T
        self.x = torch.from_numpy(ids[:n * T].astype(np.int64)).view(n, T)
        self.y = torch.from_numpy(ids[1:n * T + 1].astype(np.int64)).view(n, T)
        self.batch, self.batches = batch, math.ceil(n / batch)

    def get(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = slice(i * self.batch, (i + 1) * self.batch)
        return self.x[rows], self.y[rows]  # (B, T), (B, T)


val_ids = split_ids("val")
whole = Consecutive(val_ids, S["batch_size"])
model_bpb = language_model_metrics(base, tokenizer, whole, whole.batches,
                                   cpu)["bits_per_byte"]
text = tokenizer.decode(val_ids[1:whole.x.numel() + 1].tolist()).encode("utf-8")
compressors = {"zlib -9": len(zlib.compress(text, 9)),
               "lzma -9": len(lzma.compress(text, preset=9))}
bpb = {"book model": model_bpb,
       **{name: 8 * size / len(text) for name, size in compressors.items()}}
for name, value in bpb.items():
    print(f"{name:11} {value:.3f} bits/byte")
print(f"({len(text):,} bytes of held-out Python)")

# %% [markdown]
# ## Bits per byte through training
#
# The same measure on the same text for every checkpoint the run kept (and the
# untrained model): where the model crosses the compressors.

# %% tags=["curve"]
per_step = summary["train"]["batch_size"] * T  # tokens per optimizer step
steps = [int(p.name.removeprefix("step_")) for p in list_checkpoints(run_dir)]
curve = [{"step": 0, "bits_per_byte": language_model_metrics(
    models["untrained"], tokenizer, whole, whole.batches, cpu)["bits_per_byte"]}]
for step in steps:
    model = load_model(run_dir, step)[0]
    curve.append({"step": step, "bits_per_byte": language_model_metrics(
        model, tokenizer, whole, whole.batches, cpu)["bits_per_byte"]})
for point in curve:
    print(f"step {point['step']:5} ({point['step'] * per_step / 1e6:4.2f} M tokens) "
          f"{point['bits_per_byte']:.3f} bits/byte")

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


train_h = np.unique(ngram_hashes(split_ids("train"), S["ngram"]))
val_h = ngram_hashes(val_ids, S["ngram"])
overlap = float(np.isin(val_h, train_h).mean())
print(f"{overlap:.1%} of {len(val_h):,} validation {S['ngram']}-grams occur in the "
      f"{len(train_h):,} distinct training {S['ngram']}-grams")

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 2.6),
                                  gridspec_kw={"width_ratios": [3, 2]})
tokens_m = [p["step"] * per_step / 1e6 for p in curve]
left.plot(tokens_m, [p["bits_per_byte"] for p in curve], marker="o", markersize=3,
          color="#0969da", label="book model")
for name, color in zip(compressors, ("#bc4c00", "#8250df")):
    left.axhline(bpb[name], color=color, linestyle="--", linewidth=1, label=name)
left.set_ylim(bottom=0)
left.set_xlabel("tokens trained (millions)")
left.set_ylabel("held-out bits per byte")
left.legend(frameon=False, fontsize=7)
labels = [r["model"] for r in rows]
acc = [r["cloze"] for r in rows]
errors = [[r["cloze"] - r["cloze_low"] for r in rows],
          [r["cloze_high"] - r["cloze"] for r in rows]]
right.errorbar(range(len(rows)), acc, yerr=errors, fmt="o", color="#0969da",
               capsize=3)
right.axhline(1 / S["choices"], color="#57606a", linestyle=":", linewidth=1)
right.text(len(rows) - 1, 1 / S["choices"] + 0.02, "chance", fontsize=7,
           ha="right", color="#57606a")
right.set_xticks(range(len(rows)), labels, fontsize=7)
right.set_xlim(-0.5, len(rows) - 0.5)
right.set_ylim(0, 1)
right.set_ylabel("cloze accuracy (95 % CI)")
for ax in (left, right):
    ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("evaluation.svg")

json.dump({"rows": [{k: v for k, v in r.items() if k in (
               "model", "val_loss", "perplexity", "bits_per_byte", "accuracy",
               "tokens", "bytes", "cloze", "cloze_low", "cloze_high")}
                    for r in rows],
           "chance": 1 / S["choices"], "items": len(items), "choices": S["choices"],
           "model": summary["model"], "params": summary["params"],
           "max_steps": summary["train"]["max_steps"],
           "early_step": S["early_step"], "tokens_trained":
               summary["tokens_trained"], "vocab_size": meta["vocab_size"],
           "bpb": bpb, "curve": curve, "tokens_per_step": per_step,
           "val_bytes": len(text), "overlap": overlap, "ngram": S["ngram"],
           "eval_batches": S["eval_batches"], "batch_size": S["batch_size"]},
          open("evaluation.json", "w"), indent=1)
