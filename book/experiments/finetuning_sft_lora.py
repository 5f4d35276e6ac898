# %% [markdown]
# # Teaching a tiny model to answer: SFT and LoRA
#
# We pretrain a small GPT on a 1 MB slice of the standard library (about half a
# minute of CPU), then fine-tune it on the default instruction data, "Write the
# docstring for `def f(...)`." -> the docstring's first paragraph, twice: a full
# fine-tune (SFT) and LoRA adapters on the attention layers. We look at the chat
# template and its loss mask, at packing, at the masked loss and a reply before and
# after, and check that merging the adapters changes nothing.

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from llm_reference.chat import format_chat, tokenize_chat
from llm_reference.checkpoint import load_model
from llm_reference.config import load_preset
from llm_reference.data import load_tokenizer
from llm_reference.finetune import (
    FinetuneSettings,
    SFTTask,
    finetune,
    split_held_out,
    stdlib_conversations,
)
from llm_reference.lora import (
    LoRAConfig,
    apply_lora,
    load_adapters,
    lora_parameter_count,
)
from llm_reference.model import GPT, ModelConfig
from llm_reference.quickstart import TINY_MODEL, tiny_base, tiny_data

BOOK = {"timeout": 420, "seed": 0,
        "settings": {"max_bytes": 1_000_000, "vocab_size": 512, "pretrain_steps": 150,
                     "examples": 2000, "steps": 60, "batch_size": 16,
                     "sft_lr": 1e-3, "lora_lr": 3e-3, "lora_rank": 8}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])
torch.set_num_threads(1)

workdir = tempfile.TemporaryDirectory()
root = Path(workdir.name)

# %% [markdown]
# The base model: `tiny_data` runs `prepare` on a slice of the standard library and
# `tiny_base` pretrains `TINY_MODEL` (4 layers, width 128, context 128) on it with
# `train`, as in the earlier steps. Both keep their result in a cache, shared with
# the other experiments that start from this model.

# %%
data_dir = tiny_data(max_bytes=S["max_bytes"], vocab_size=S["vocab_size"])
base = tiny_base(data_dir, S["pretrain_steps"], seed=BOOK["seed"])
tok = load_tokenizer(data_dir)
print(f"pretrained {S['pretrain_steps']} steps: validation loss {base.val_loss:.2f}")

# %% [markdown]
# ## The chat template and its loss mask
#
# One default example in ChatML, then its tokens: the ones in [brackets] have mask
# 1 (the reply and the `<|im_end|>` that closes it), the others are context.

# %% tags=["template"]
conversations = stdlib_conversations()
train_convs, val_convs = split_held_out(conversations, 0.05)
example = val_convs[0]
print(format_chat(example), end="")
ids, mask = tokenize_chat(tok, example)
pieces = []
for token, trained in zip(ids, mask):
    text = tok.decode([token]).replace("\n", "\\n")
    pieces.append(f"[{text}]" if trained else text)
print("\n" + "".join(pieces))
print(f"{len(ids)} tokens, {sum(mask)} trained; {len(conversations):,} conversations "
      f"({len(train_convs):,} train, {len(val_convs):,} held out)")

# %% [markdown]
# ## Packing
#
# The same 2,000 training examples in rows of 128 tokens, packed several to a row
# or one per row (padded).

# %% tags=["packing"]
T = TINY_MODEL["context_length"]
packing = {}
for pack in (True, False):
    task = SFTTask(tok, train_convs[:S["examples"]], [], T, S["batch_size"],
                   BOOK["seed"], pack)
    st = task.stats["train"]
    packing["packed" if pack else "one per row"] = st
    print(f"{'packed' if pack else 'one per row':12} {st['examples']:5,} examples "
          f"({st['too_long']} too long) in {st['rows']:5,} rows: "
          f"{st['fill']:.0%} of the tokens are text, "
          f"{st['trained_tokens']:,} trained targets")

# %% [markdown]
# ## Full fine-tune (SFT) and LoRA
#
# Both start from the pretrained checkpoint, see the same batches, and are scored
# on the same held-out conversations (masked loss: reply tokens only). The
# learning rates are higher than the command's defaults: 60 steps is very short.

# %% tags=["finetune"]
common = dict(max_steps=S["steps"], batch_size=S["batch_size"], warmup_steps=5,
              max_examples=S["examples"], eval_interval=S["steps"], eval_batches=4,
              seed=BOOK["seed"])
runs = {
    "sft": finetune(base.folder, root / "sft",
                    FinetuneSettings(method="sft", lr=S["sft_lr"], **common)),
    "lora": finetune(base.folder, root / "lora",
                     FinetuneSettings(method="lora", lr=S["lora_lr"],
                                      lora_rank=S["lora_rank"], **common),
                     merge=True),
}
for name, r in runs.items():
    print(f"--- {name}: {r['trainable_parameters']:,} trainable of "
          f"{r['total_parameters']:,} parameters "
          f"({r['trainable_parameters'] / r['total_parameters']:.1%})")
    print(f"held-out masked loss {r['before']['val_loss']:.3f} -> "
          f"{r['after']['val_loss']:.3f}")
sample = runs["sft"]["sample"]
print(f"prompt:      {sample['prompt'][-1]['content']}")
print(f"reference:   {sample['reference']!r}")
print(f"before:      {sample['before']!r}")
for name, r in runs.items():
    print(f"after {name + ':':6} {r['sample']['after']!r}")

# %% [markdown]
# ## Merging the adapters
#
# The LoRA run saved its adapters (adapter.safetensors) and, with merge, a plain
# run whose weights are W + (alpha / r) B A. Load the base model with the adapters,
# and the merged model, and compare their logits on held-out text.

# %% tags=["checkpoint"]
adapted, _, _ = load_model(base.folder)
config = load_adapters(adapted, root / "lora")  # wraps attn.qkv, attn.proj
merged, _, _ = load_model(root / "lora")  # a plain GPT: no LoRA layers left
x = torch.tensor([tokenize_chat(tok, val_convs[1])[0]])  # (1, T)
with torch.no_grad():
    diff = (adapted.eval()(x)[0] - merged.eval()(x)[0]).abs().max().item()
d, L = TINY_MODEL["d_model"], TINY_MODEL["n_layer"]
formula = L * config.rank * ((d + 3 * d) + (d + d))  # r (d_in + d_out), qkv + proj
print(f"adapter numbers: {lora_parameter_count(adapted):,} "
      f"(r (d_in + d_out) summed: {formula:,})")
print(f"max |logits(base + adapters) - logits(merged)| = {diff:.1e}")
assert diff < 1e-4

# %% [markdown]
# ## LoRA at GPT-2 scale
#
# The trainable share shrinks as the model grows: the 124M preset, built on the
# meta device (shapes only, no memory), with rank 8 on two sets of targets.

# %% tags=["scale"]
preset = load_preset("gpt2-124m")["model"]
scale = []
for targets in (("attn.qkv", "attn.proj"), ("attn.qkv", "attn.proj", "mlp.*")):
    with torch.device("meta"):
        big = GPT(ModelConfig.from_dict({**preset, "vocab_size": 50257}))
        total = big.num_parameters()
        apply_lora(big, LoRAConfig(rank=8, targets=targets))
    n = lora_parameter_count(big)
    scale.append({"targets": ", ".join(targets), "lora": n, "total": total,
                  "share": n / total})
    print(f"rank 8 on {', '.join(targets):28} {n:>10,} of {total:,} "
          f"({n / total:.2%})")

# %%
curves = {}
for name in runs:
    lines = (root / name / "metrics.jsonl").read_text().splitlines()
    curves[name] = [json.loads(line)["loss"] for line in lines]
fig, ax = plt.subplots(figsize=(6, 2.4))
for name, color, label in (("sft", "#0969da", "full fine-tune (SFT)"),
                           ("lora", "#bc4c00", f"LoRA, rank {S['lora_rank']}")):
    ax.plot(range(1, len(curves[name]) + 1), curves[name], color=color, label=label)
ax.set_xlabel("step")
ax.set_ylabel("masked training loss")
ax.legend(frameon=False)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("sft_loss.svg")

json.dump({"base_val_loss": base.val_loss, "packing": packing, "scale": scale,
           "runs": {n: {k: r[k] for k in ("trainable_parameters", "total_parameters",
                                          "before", "after", "sample")}
                    for n, r in runs.items()},
           "stopped": {n: len(tok.encode(r["sample"]["after"])) < 48
                       for n, r in runs.items()},
           "merge_diff": diff, "lora_numbers": lora_parameter_count(adapted),
           "n_conversations": len(conversations), "steps": S["steps"],
           "examples": S["examples"], "pretrain_steps": S["pretrain_steps"],
           "sft_lr": S["sft_lr"], "lora_lr": S["lora_lr"]},
          open("finetuning.json", "w"), indent=1)
workdir.cleanup()
