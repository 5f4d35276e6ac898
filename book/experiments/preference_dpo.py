# %% [markdown]
# # DPO on the book's model: a preference it can learn, and one it struggles with
#
# We fine-tune the book's model (`book_model.py`) briefly on the docstring
# conversations (SFT, the usual starting point of DPO), then run DPO on two
# preference sets built from the same prompts:
#
# - "concise": chosen = the docstring's first sentence, rejected = the whole
#   docstring. Same content, a pure style preference that needs no understanding;
#   it changes what the model says, which we measure on prompts DPO never saw.
# - "default": the data `finetune --method dpo` builds: chosen = the function's own
#   docstring, rejected = another function's. Telling them apart means reading the
#   prompt.

# %%
import json
import re
import statistics
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from llm_reference.checkpoint import load_model
from llm_reference.finetune import (
    FinetuneSettings,
    finetune,
    sample_reply,
    stdlib_conversations,
)
from llm_reference.quickstart import book_model

BOOK = {"timeout": 1200, "seed": 0, "needs": ["book_model"],
        "settings": {"sft_steps": 30, "dpo_steps": 40, "pairs": 1200,
                     "batch_size": 8, "beta": 0.1, "lr": 3e-5, "eval_interval": 5,
                     "measured": 100, "reply_tokens": 48}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])
torch.set_num_threads(2)

workdir = tempfile.TemporaryDirectory()
root = Path(workdir.name)

# %% [markdown]
# The starting point: the book's model, then a short SFT on the docstring
# conversations.

# %%
# the book's model (run/, data/, summary): book_model.py wrote it; the builder
# says where in BOOK_MODEL_DIR
book = book_model()
run_dir, data_dir = book.run, book.data
summary = book.summary
sft = finetune(run_dir, root / "sft",
               FinetuneSettings(method="sft", max_steps=S["sft_steps"], lr=1e-3,
                                batch_size=16, warmup_steps=5, max_examples=2000,
                                eval_interval=S["sft_steps"], eval_batches=2,
                                seed=BOOK["seed"]))
print(f"pretrained: validation loss {summary['val_loss']:.2f}; fine-tuned: "
      "held-out "
      f"masked loss {sft['after']['val_loss']:.2f}")

# %% [markdown]
# ## The concise set
#
# Only the prompts whose docstring has more than one sentence; written as JSONL in
# the format `finetune --data` reads. A "sentence" here ends with a full stop before
# white space: crude (an "e.g. " ends one too), and the same for every model.

# %% tags=["style_data"]
def sentences(text: str) -> int:
    """Full stops that end a sentence: before white space or at the end."""
    return len(re.findall(r"\.(?:\s|$)", text.strip()))


def first_sentence(text: str) -> str:
    return re.split(r"(?<=\.)\s", text.strip())[0]


def one_sentence(reply: str) -> bool:
    """A single complete sentence, the behaviour the concise set asks for."""
    return sentences(reply) == 1 and reply.strip().endswith(".")


conversations = [c for c in stdlib_conversations()
                 if sentences(c[-1]["content"]) > 1]
measured = conversations[-S["measured"]:]  # the last ones: kept out of the set
pairs = conversations[:-S["measured"]][:S["pairs"]]
with open(root / "concise.jsonl", "w", encoding="utf-8") as f:
    for c in pairs:
        reply = c[-1]["content"]
        f.write(json.dumps({"prompt": c[0]["content"], "rejected": reply,
                            "chosen": first_sentence(reply)}) + "\n")
print(open(root / "concise.jsonl", encoding="utf-8").readline(), end="")

# %% [markdown]
# ## DPO on both sets
#
# The same settings for both: beta 0.1, 40 steps of 8 pairs, learning rate 3e-5
# (1e-4, tried while writing this, raised the concise margin by cutting replies off
# mid-sentence), starting from (and measured against) the SFT model. Every 5
# steps: the DPO loss, the reward margin and the reward accuracy on 64 held-out
# pairs.

# %% tags=["checkpoint"]
common = dict(method="dpo", max_steps=S["dpo_steps"], batch_size=S["batch_size"],
              lr=S["lr"], beta=S["beta"], warmup_steps=5, val_fraction=0.1,
              max_examples=S["pairs"], eval_interval=S["eval_interval"],
              eval_batches=8, seed=BOOK["seed"])
results = {"concise": finetune(root / "sft", root / "dpo-concise",
                               FinetuneSettings(**common),
                               data=root / "concise.jsonl"),
           "default": finetune(root / "sft", root / "dpo-default",
                               FinetuneSettings(**common))}
for name, r in results.items():
    b, a = r["before"], r["after"]
    print(f"--- {name}: {r['data_stats']['train']['pairs']} train pairs, "
          f"{r['data_stats']['val']['pairs']} held out")
    print(f"held-out loss {b['val_loss']:.3f} -> {a['val_loss']:.3f}   margin "
          f"{b['val_margin']:.2f} -> {a['val_margin']:.2f}   reward accuracy "
          f"{b['val_reward_accuracy']:.0%} -> {a['val_reward_accuracy']:.0%}")
    print(f"rewards after: chosen {a['val_chosen_reward']:+.2f}, "
          f"rejected {a['val_rejected_reward']:+.2f}")

# %% [markdown]
# ## Replies before and after
#
# Greedy replies to prompts kept out of the concise set (the library's last
# multi-sentence docstrings), from the SFT model and after DPO on it: how many
# sentences and words they have. Then one held-out prompt of each set.

# %% tags=["replies"]
lengths = {}
for name, folder in (("SFT model", "sft"), ("after DPO", "dpo-concise")):
    model, tok, _ = load_model(root / folder)
    replies = [sample_reply(model, tok, c, S["reply_tokens"]) for c in measured]
    lengths[name] = {"words": statistics.mean(len(r.split()) for r in replies),
                     "one_sentence": statistics.mean(map(one_sentence, replies)),
                     "example": replies[0]}
print(f"{len(measured)} new prompts, greedy replies of up to {S['reply_tokens']} "
      "tokens:")
for name, st in lengths.items():
    print(f"{name:10} {st['words']:5.1f} words on average, "
          f"{st['one_sentence']:4.0%} one sentence")
print(f"\nprompt: {measured[0][0]['content']}")
for name, st in lengths.items():
    print(f"{name}: {st['example']!r}")
for name, r in results.items():
    s = r["sample"]
    print(f"\n--- {name}: {s['prompt'][-1]['content']}")
    print(f"SFT model: {s['before']!r}")
    print(f"after DPO: {s['after']!r}")

# %%
curves = {}
for name in results:
    lines = (root / f"dpo-{name}" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    curves[name] = [{k: r[k] for k in ("step", "val_margin", "val_reward_accuracy")}
                    for r in records if "val_margin" in r]
fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 2.4))
for name, color in (("concise", "#0969da"), ("default", "#bc4c00")):
    steps = [0] + [c["step"] for c in curves[name]]
    left.plot(steps, [0] + [c["val_margin"] for c in curves[name]], color=color,
              marker="o", markersize=3, label=f"{name} set")
    right.plot(steps, [0] + [c["val_reward_accuracy"] for c in curves[name]],
               color=color, marker="o", markersize=3, label=f"{name} set")
left.set_ylabel("held-out reward margin")
left.set_yscale("symlog", linthresh=0.1)
right.set_ylabel("held-out reward accuracy")
right.set_ylim(-0.02, 1.02)
for ax in (left, right):
    ax.set_xlabel("DPO step")
    ax.spines[["top", "right"]].set_visible(False)
right.legend(frameon=False, fontsize=7, loc="lower right")
fig.tight_layout()
fig.savefig("dpo_margin.svg")

json.dump({n: {"before": r["before"], "after": r["after"],
               "pairs": r["data_stats"]["train"]["pairs"],
               "held_out": r["data_stats"]["val"]["pairs"], "curve": curves[n]}
           for n, r in results.items()}
          | {"settings": S, "lengths": lengths, "measured": len(measured)},
          open("preference.json", "w"), indent=1)
workdir.cleanup()
