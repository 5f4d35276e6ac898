# %% [markdown]
# # Anatomy of a GPT
#
# Where the parameters of the presets are (counted on PyTorch's "meta" device:
# shapes without memory), how they compare with the 12 L C² rule of thumb, the
# training FLOPs per token, the shapes of one forward pass, and what the scaled
# initialisation does to the residual stream of a deep model.

# %%
import json
import math

import matplotlib.pyplot as plt
import torch

from llm_reference.config import load_preset, model_config
from llm_reference.model import GPT, ModelConfig

BOOK = {"timeout": 300, "seed": 0,
        "data": ["../llm_reference/presets/tiny.toml",
                 "../llm_reference/presets/gpt2-124m.toml",
                 "../llm_reference/presets/llama-style.toml"],
        "settings": {"presets": ["tiny", "gpt2-124m", "llama-style"],
                     "auto_vocab": 8192, "deep_layers": 24}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])
torch.set_num_threads(1)

# the component each parameter belongs to, by the first match in its name
GROUPS = [("tok_emb", "token embedding"), ("pos_emb", "position embedding"),
          (".attn.", "attention"), (".mlp.", "MLP"), ("norm", "norms"),
          ("lm_head", "output head (untied)")]


def breakdown(model: GPT) -> dict[str, int]:
    counts = {label: 0 for _, label in GROUPS}
    for name, p in model.named_parameters():  # tied weights are listed once
        label = next(label for key, label in GROUPS if key in name)
        counts[label] += p.numel()
    return counts


# %% tags=["params"]
configs = {name: model_config(load_preset(name)["model"], S["auto_vocab"])
           for name in S["presets"]}
rows = []
for name, config in configs.items():
    with torch.device("meta"):
        model = GPT(config)
    counts = breakdown(model)
    total = model.num_parameters()
    assert sum(counts.values()) == total
    rule = 12 * config.n_layer * config.d_model**2  # blocks only, no biases
    blocks = counts["attention"] + counts["MLP"] + counts["norms"]
    rows.append({"preset": name, **counts, "total": total,
                 "non_embedding": model.num_parameters(non_embedding=True),
                 "rule": rule, "flops_per_token": model.flops_per_token(),
                 "attention_flops": 12 * config.n_layer * config.d_model
                 * config.context_length, "context": config.context_length})
    print(f"{name}: {total:,} parameters "
          f"({config.position}, {config.norm}, {config.mlp}, "
          f"{config.kv_heads}/{config.n_head} kv heads, "
          f"{'tied' if config.tie_weights else 'untied'} head)")
    for label, n in counts.items():
        if n:
            print(f"  {label:22} {n:>12,}  {n / total:6.1%}")
    print(f"  blocks {blocks:,} vs 12 L C^2 = {rule:,} ({blocks / rule:.3f}x)")
    matmul_weights = model.num_parameters(True) + config.d_model * config.vocab_size
    print(f"  training FLOPs per token {model.flops_per_token():.3e} "
          f"(6N alone: {6 * matmul_weights:.3e})")

# %%
components = [label for _, label in GROUPS] + ["total"]
table = [{"component": c, **{r["preset"]: r[c] for r in rows}} for c in components]

# %% [markdown]
# GPT-2 small itself has the vocabulary of 50,257 tokens; the preset rounds it up to
# 50,304, a multiple of 128, because matrix shapes divisible by large powers of two
# run faster on GPUs.

# %% tags=["gpt2"]
with torch.device("meta"):
    gpt2 = GPT(ModelConfig(**{**configs["gpt2-124m"].to_dict(), "vocab_size": 50257}))
print(f"GPT-2 small with V = 50,257: {gpt2.num_parameters():,} parameters")
untied = ModelConfig(**{**configs["gpt2-124m"].to_dict(), "tie_weights": False})
with torch.device("meta"):
    print(f"the same without weight tying: {GPT(untied).num_parameters():,}")

# %% [markdown]
# ## One forward pass, shape by shape
#
# Forward hooks print what each module of the tiny preset returns for a batch of
# 2 sequences of 8 tokens.

# %% tags=["checkpoint"]
tiny = GPT(configs["tiny"]).eval()
shapes = []


def record(name: str):
    def hook(module, inputs, output):
        shapes.append((name, tuple(output.shape)))
    return hook


hooks = []
for name, module in [("tok_emb", tiny.tok_emb), ("pos_emb", tiny.pos_emb),
                     ("blocks.0.norm1", tiny.blocks[0].norm1),
                     ("blocks.0.attn", tiny.blocks[0].attn),
                     ("blocks.0.mlp.up", tiny.blocks[0].mlp.up),
                     ("blocks.0.mlp", tiny.blocks[0].mlp),
                     ("blocks.3", tiny.blocks[3]), ("norm_f", tiny.norm_f)]:
    hooks.append(module.register_forward_hook(record(name)))
idx = torch.randint(0, configs["tiny"].vocab_size, (2, 8))  # (B, T)
with torch.no_grad():
    logits, _ = tiny(idx)
    for hook in hooks:
        hook.remove()
    # with targets the model returns the loss alone, not the logits
    _, loss = tiny(idx, targets=torch.roll(idx, -1, dims=1))
for name, shape in shapes:
    print(f"{name:16} {shape}")
print(f"{'logits':16} {tuple(logits.shape)}")
print(f"loss {loss.item():.3f}, ln V = {math.log(configs['tiny'].vocab_size):.3f}")

# %% [markdown]
# ## The MLP: GELU with 4C against SwiGLU with ~8/3 C
#
# Three matrices of width 8/3 C hold as many weights as two of width 4 C.

# %% tags=["mlp"]
C = 512
for mlp in ("gelu", "swiglu"):
    config = ModelConfig(d_model=C, mlp=mlp, bias=False)
    with torch.device("meta"):
        block = GPT(config).blocks[0].mlp
    n = sum(p.numel() for p in block.parameters())
    print(f"{mlp:6}: hidden width {config.ff_dim:4d}, {n:,} weights "
          f"({n / C**2:.2f} C^2)")

# %% [markdown]
# ## Initialisation and the residual stream
#
# A 24-layer model (C = 128) at initialisation: the standard deviation of the
# residual stream after each block, with GPT-2's scaled initialisation of the two
# output projections (std 0.02 / sqrt(2 L)) and with plain std 0.02.

# %%
deep = ModelConfig(vocab_size=512, context_length=128, n_layer=S["deep_layers"],
                   n_head=4, d_model=128)
idx = torch.randint(0, 512, (8, 128))
growth = {}
for scaled in (True, False):
    torch.manual_seed(BOOK["seed"])
    model = GPT(deep)
    if not scaled:
        for block in model.blocks:
            torch.nn.init.normal_(block.attn.proj.weight, std=0.02)
            torch.nn.init.normal_(block.mlp.down.weight, std=0.02)
    stds = []  # the residual stream's std after each block, filled by the hooks
    for block in model.blocks:
        block.register_forward_hook(
            lambda m, i, out, stds=stds: stds.append(out.std().item()))
    with torch.no_grad():
        x0 = model.tok_emb(idx) + model.pos_emb(torch.arange(128))
        model(idx)
    growth["scaled" if scaled else "plain"] = [x0.std().item()] + stds
    print(f"{'scaled' if scaled else 'plain':6}: std {x0.std():.4f} at the input, "
          f"{stds[-1]:.4f} after block {deep.n_layer}")

# %%
json.dump({"presets": rows, "table": table, "growth": growth,
           "gpt2_params": gpt2.num_parameters()},
          open("model.json", "w"), indent=1)
fig, ax = plt.subplots(figsize=(6, 2.6))
for key, color, label in (("plain", "#bc4c00", "plain init, std 0.02"),
                          ("scaled", "#0969da", "scaled init, 0.02 / √(2L)")):
    ax.plot(range(len(growth[key])), growth[key], marker="o", markersize=2.5,
            color=color, label=label)
ax.set_xlabel("residual stream after block (0 = embeddings)")
ax.set_ylabel("standard deviation")
ax.legend(frameon=False)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("residual_growth.svg")
