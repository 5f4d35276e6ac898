# %% [markdown]
# # Compression against vocabulary size
#
# We train byte-level BPE on a slice of the default corpus (the standard library,
# cleaned as in the data step) and measure bytes per token on held-out documents.
# BPE learns its merges in order, so the tokenizer with the first k merges of a large
# training run *is* the tokenizer a run stopped at k would give: one training run per
# pre-tokenization pattern yields the whole curve.

# %%
import json

import matplotlib.pyplot as plt

from llm_reference.cleaning import clean
from llm_reference.compliance import SourceRecord
from llm_reference.data import read_documents, split_documents
from llm_reference.sources import open_sources
from llm_reference.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer
from llm_reference.tokenizer_metrics import bytes_per_token, tokens_per_word

BOOK = {"timeout": 900, "seed": 0,
        "settings": {"max_bytes": 3_000_000, "val_fraction": 0.1,
                     "vocab_sizes": [259, 512, 1024, 2048, 4096, 8192],
                     "patterns": ["gpt2", "gpt4"]}}
S = BOOK["settings"]

sources = open_sources(["stdlib"])
records = {s.id: SourceRecord(s.id, s.kind, s.license) for s in sources}
docs = list(clean(read_documents(sources, records, S["max_bytes"]), records))
train, val = split_documents(docs, S["val_fraction"], seed=BOOK["seed"])
train_texts, val_texts = [d.text for d in train], [d.text for d in val]
print(f"train {sum(len(t.encode()) for t in train_texts) / 1e6:.2f} MB "
      f"({len(train)} docs), held out "
      f"{sum(len(t.encode()) for t in val_texts) / 1e6:.2f} MB ({len(val)} docs)")


# %%
def first_merges(tok: Tokenizer, vocab_size: int) -> Tokenizer:
    """The tokenizer made of `tok`'s first merges: same ids, a smaller vocabulary."""
    k = vocab_size - 256 - len(tok.special_tokens)
    vocab = {i: tok.vocab[i] for i in range(256 + k)}
    merges = dict(list(tok.merges.items())[:k])
    specials = {s: 256 + k + n for n, s in enumerate(tok.special_tokens)}
    return Tokenizer(vocab, merges, specials, tok.pattern)


rows = []
largest = {}
for pattern in S["patterns"]:
    largest[pattern] = Tokenizer.train(train_texts, max(S["vocab_sizes"]), pattern)
    for size in S["vocab_sizes"]:
        tok = first_merges(largest[pattern], size)
        rows.append({"pattern": pattern, "vocab_size": size,
                     "bytes_per_token": bytes_per_token(tok, val_texts),
                     "tokens_per_word": tokens_per_word(tok, val_texts)})

# %% tags=["checkpoint"]
print("pattern  vocab  bytes/token  tokens/word")
for r in rows:
    print(f"{r['pattern']:7} {r['vocab_size']:6d} {r['bytes_per_token']:12.2f} "
          f"{r['tokens_per_word']:12.2f}")

# %% [markdown]
# What the largest GPT-4-pattern tokenizer makes of a line of Python, and its longest
# tokens (merges learned late are long and specific to the corpus).

# %% tags=["example"]
tok = largest["gpt4"]
first = [tok.vocab[i].decode("utf-8", "replace") for i in range(256, 268)]
print("first merges:", ", ".join(repr(t) for t in first))
line = "    def __init__(self, name: str) -> None:"
pieces = [tok.decode([i]) for i in tok.encode(line)]
print(len(pieces), "tokens:", "|".join(pieces))


def show(token: bytes) -> str:
    """A token for printing: a run of one character as count x character, a long
    token cut short."""
    text = token.decode("utf-8", "replace")
    if len(set(text)) == 1:
        return f"{len(text)} x {text[0]!r}"
    shown = repr(text)
    return shown if len(shown) <= 24 else f"{shown[:20]}… ({len(token)} bytes)"


longest = sorted(tok.vocab.values(), key=len, reverse=True)[:8]
print("longest tokens:", "; ".join(show(t) for t in longest))
assert tok.decode(tok.encode(line)) == line
assert tok.encode("<|endoftext|>") != [tok.special_tokens["<|endoftext|>"]]
assert tok.encode("<|endoftext|>", allowed_special="all") == [
    tok.special_tokens[DEFAULT_SPECIAL_TOKENS[0]]]

# %%
json.dump({"rows": rows, "first_merges": first,
           "example": {"line": line, "pieces": pieces}},
          open("compression.json", "w"), indent=1)
fig, ax = plt.subplots(figsize=(6, 2.8))
for pattern, color in zip(S["patterns"], ("#bc4c00", "#0969da")):
    mine = [r for r in rows if r["pattern"] == pattern]
    ax.plot([r["vocab_size"] for r in mine], [r["bytes_per_token"] for r in mine],
            marker="o", markersize=3, color=color, label=f"{pattern} pattern")
ax.set_xscale("log", base=2)
ax.set_xticks(S["vocab_sizes"], [str(v) for v in S["vocab_sizes"]])
ax.set_xlabel("vocabulary size")
ax.set_ylabel("held-out bytes per token")
ax.legend(frameon=False)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("compression.svg")
