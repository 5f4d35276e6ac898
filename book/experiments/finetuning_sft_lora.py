# %% [markdown]
# # Teaching the book's model an instruction format: SFT and LoRA
#
# The book's model (`book_model.py`) has read the standard library; it has never
# seen a request. We fine-tune it on a task built from the same library: "Name the
# function: <the first line of its docstring>" -> the function's name. The
# pretraining text has each docstring right after its function's name; the task
# asks for the reverse, in a chat format the model has never met. Twice: a full
# fine-tune (SFT) and LoRA adapters on the attention layers. We look at the chat
# template and its loss mask, at packing, at the masked loss, and at held-out
# accuracy before and after, and check that merging the adapters changes nothing.

# %%
import json
import re
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from llm_reference.atomic import write_text
from llm_reference.chat import format_chat, tokenize_chat
from llm_reference.checkpoint import load_model
from llm_reference.config import load_preset
from llm_reference.finetune import (
    FinetuneSettings,
    SFTTask,
    finetune,
    sample_reply,
    split_held_out,
)
from llm_reference.lora import (
    LoRAConfig,
    apply_lora,
    load_adapters,
    lora_parameter_count,
)
from llm_reference.model import GPT, ModelConfig
from llm_reference.quickstart import book_model
from llm_reference.sft_data import function_docstrings
from llm_reference.sources import stdlib_files

BOOK = {"timeout": 1200, "seed": 0, "needs": ["book_model"],
        "settings": {"max_summary": 120, "examples": 3000, "steps": 100,
                     "batch_size": 16, "sft_lr": 1e-3, "lora_lr": 4e-3,
                     "lora_rank": 8, "val_fraction": 0.05, "scored": 200}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])
torch.set_num_threads(2)

workdir = tempfile.TemporaryDirectory()
root = Path(workdir.name)
# the book's model (run/, data/, summary): book_model.py wrote it; the builder
# says where in BOOK_MODEL_DIR
book = book_model()
run_dir, data_dir = book.run, book.data
summary = book.summary
base, tok, _ = load_model(run_dir)  # a fresh copy: change it freely
T = base.config.context_length
print(f"the book's model: {base.num_parameters():,} parameters, "
      f"validation loss {summary['val_loss']:.2f}")

# %% [markdown]
# ## The task: name the function
#
# Every documented public function of the standard library gives one conversation,
# from `function_docstrings` (the default SFT data uses the same pairs the other
# way round). A hash of each conversation decides the held-out split. The data goes
# to a JSONL file, the form the `finetune` command reads (`--data`).

# %% tags=["task"]
def naming_conversation(signature: str, summary: str) -> list[dict]:
    name = re.match(r"(?:async )?def (\w+)", signature).group(1)
    return [{"role": "user", "content": f"Name the function: {summary}"},
            {"role": "assistant", "content": name}]


seen, conversations = set(), []
for path in stdlib_files()[1]:
    try:
        pairs = list(function_docstrings(Path(path).read_text(encoding="utf-8"),
                                         max_chars=S["max_summary"]))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        continue  # a few stdlib files are deliberately not valid Python 3
    for signature, doc in pairs:
        conv = naming_conversation(signature, " ".join(doc.split()))
        if not conv[1]["content"].startswith("_") and str(conv) not in seen:
            seen.add(str(conv))
            conversations.append(conv)
train_convs, val_convs = split_held_out(conversations, S["val_fraction"])
data = root / "naming.jsonl"
write_text(data, "".join(json.dumps({"messages": c}) + "\n"
                         for c in train_convs + val_convs))
print(f"{len(conversations):,} conversations ({len(train_convs):,} train, "
      f"{len(val_convs):,} held out)")

# %% [markdown]
# ## The chat template and its loss mask
#
# One held-out example in ChatML, then its tokens: the ones in [brackets] have
# mask 1 (the reply and the `<|im_end|>` that closes it), the others are context.

# %% tags=["template"]
example = val_convs[0]
print(format_chat(example), end="")
ids, mask = tokenize_chat(tok, example)
pieces = []
for token, trained in zip(ids, mask):
    text = tok.decode([token]).replace("\n", "\\n")
    pieces.append(f"[{text}]" if trained else text)
print("\n" + "".join(pieces))
print(f"{len(ids)} tokens, {sum(mask)} trained")

# %% [markdown]
# ## Packing
#
# The first 3,000 training examples in rows of 128 tokens, packed several to a
# row or one per row (padded).

# %% tags=["packing"]
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
# Both start from the book's model, see the same batches, and are scored on the
# same held-out conversations: the masked loss (reply tokens only), and the share
# of greedy replies that are exactly the function's name.

# %% tags=["finetune"]
common = dict(max_steps=S["steps"], batch_size=S["batch_size"], warmup_steps=10,
              max_examples=S["examples"], eval_interval=S["steps"], eval_batches=4,
              val_fraction=S["val_fraction"], seed=BOOK["seed"])
runs = {
    "sft": finetune(run_dir, root / "sft",
                    FinetuneSettings(method="sft", lr=S["sft_lr"], **common),
                    data=data),
    "lora": finetune(run_dir, root / "lora",
                     FinetuneSettings(method="lora", lr=S["lora_lr"],
                                      lora_rank=S["lora_rank"], **common),
                     data=data, merge=True),
}
scored = val_convs[:S["scored"]]


def replies(model: torch.nn.Module) -> list[str]:
    return [sample_reply(model.eval(), tok, c, max_new_tokens=12) for c in scored]


def accuracy(answers: list[str]) -> dict[str, float]:
    """Exact names, and replies that are one identifier (the format, right or not)."""
    names = [c[-1]["content"] for c in scored]
    return {"exact": sum(a.strip() == n for a, n in zip(answers, names)) / len(names),
            "identifier": sum(a.strip().isidentifier() for a in answers)
            / len(answers)}


answers = {"base": replies(base)}
for name in runs:
    answers[name] = replies(load_model(root / name)[0])
scores = {name: accuracy(a) for name, a in answers.items()}
for name, r in runs.items():
    print(f"--- {name}: {r['trainable_parameters']:,} trainable of "
          f"{r['total_parameters']:,} parameters "
          f"({r['trainable_parameters'] / r['total_parameters']:.1%})")
    print(f"held-out masked loss {r['before']['val_loss']:.3f} -> "
          f"{r['after']['val_loss']:.3f}")
print(f"\n{len(scored)} held-out requests, greedy replies:")
for name, sc in scores.items():
    print(f"{name:5} exact name {sc['exact']:6.1%}   one identifier "
          f"{sc['identifier']:6.1%}")
print()
for i in range(4):
    print(f"request: {scored[i][0]['content']}")
    print(f"  name {scored[i][1]['content']!r}; base {answers['base'][i]!r}; "
          f"sft {answers['sft'][i]!r}; lora {answers['lora'][i]!r}")

# %% [markdown]
# ## Merging the adapters
#
# The LoRA run saved its adapters (adapter.safetensors) and, with merge, a plain
# run whose weights are W + (alpha / r) B A. Load the base model with the adapters,
# and the merged model, and compare their logits on held-out text.

# %% tags=["checkpoint"]
adapted, _, _ = load_model(run_dir)
config = load_adapters(adapted, root / "lora")  # wraps attn.qkv, attn.proj
merged, _, _ = load_model(root / "lora")  # a plain GPT: no LoRA layers left
x = torch.tensor([tokenize_chat(tok, val_convs[1])[0]])  # (1, T)
with torch.no_grad():
    diff = (adapted.eval()(x)[0] - merged.eval()(x)[0]).abs().max().item()
d, L = base.config.d_model, base.config.n_layer
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

json.dump({"base_val_loss": summary["val_loss"], "packing": packing,
           "scale": scale,
           "runs": {n: {k: r[k] for k in ("trainable_parameters", "total_parameters",
                                          "before", "after", "sample")}
                    for n, r in runs.items()},
           "scores": scores, "scored": len(scored),
           "examples_shown": [{"request": c[0]["content"], "name": c[1]["content"],
                               **{m: answers[m][i] for m in answers}}
                              for i, c in enumerate(scored[:4])],
           "merge_diff": diff, "lora_numbers": lora_parameter_count(adapted),
           "n_conversations": len(conversations), "n_train": len(train_convs),
           "n_val": len(val_convs), "steps": S["steps"],
           "examples": S["examples"], "sft_lr": S["sft_lr"],
           "lora_lr": S["lora_lr"], "lora_rank": S["lora_rank"]},
          open("finetuning.json", "w"), indent=1)
workdir.cleanup()
