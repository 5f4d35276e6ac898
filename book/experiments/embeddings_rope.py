# %% [markdown]
# # Embedding tables and rotary positions
#
# How much of a GPT is its embedding table, and what RoPE does to queries and keys:
# we check that a rotated query·key score depends only on the distance between the
# two positions, that RoPE is the complex-number rotation of the RoFormer paper, and
# plot its angle table and how the score of a vector with itself falls off with
# distance.

# %%
import json
import math

import matplotlib.pyplot as plt
import torch

from llm_reference.config import load_preset, model_config
from llm_reference.model import GPT, apply_rope, rope_tables

BOOK = {"timeout": 300, "seed": 0,
        "data": ["../llm_reference/presets/tiny.toml",
                 "../llm_reference/presets/gpt2-124m.toml",
                 "../llm_reference/presets/llama-style.toml"],
        "settings": {"head_dim": 64, "theta": 10000.0, "max_offset": 4096,
                     "presets": ["tiny", "gpt2-124m", "llama-style"],
                     "auto_vocab": 8192}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])

# %% [markdown]
# ## The embedding tables' share of the parameters
#
# Models are built on PyTorch's "meta" device: parameters with shapes but no memory,
# enough to count them.

# %% tags=["share"]
rows = []
for name in S["presets"]:
    # vocab_size "auto" (the data's) becomes 8192, the default of `prepare`
    config = model_config(load_preset(name)["model"], S["auto_vocab"])
    with torch.device("meta"):
        model = GPT(config)
    tok = model.tok_emb.weight.numel()
    pos = model.pos_emb.weight.numel() if model.pos_emb is not None else 0
    head = model.lm_head.weight.numel() if model.lm_head is not None else 0
    total = model.num_parameters()
    rows.append({"preset": name, "vocab": config.vocab_size, "d_model": config.d_model,
                 "position": config.position, "tok_emb": tok, "pos_emb": pos,
                 "lm_head": head, "total": total,
                 "share": (tok + pos + head) / total,
                 "share_pct": f"{(tok + pos + head) / total:.0%}"})
    print(f"{name:12} V={config.vocab_size:6d} C={config.d_model:4d} "
          f"tok_emb {tok:>11,}  pos_emb {pos:>9,}  untied head {head:>9,}  "
          f"total {total:>12,}  tables {rows[-1]['share']:.0%}")

# %% [markdown]
# ## RoPE: the score depends only on the distance
#
# q and k are random vectors of one head (D = 64). We rotate q to position m and k to
# position m + Δ for every m from 0 to 1,000 and look at how much the score varies.

# %% tags=["checkpoint"]
D, theta = S["head_dim"], S["theta"]
cos, sin = rope_tables(D, 2048, theta)  # (2048, D) each
q, k = torch.randn(D), torch.randn(D)


def rotated(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x (D,) rotated to each position: (len(positions), D)."""
    rows = x.expand(len(positions), D)[None, None]  # (1, 1, P, D)
    return apply_rope(rows, cos[positions], sin[positions])[0, 0]


m = torch.arange(1001)
for delta in (0, 1, 7, 100, 1000):
    scores = (rotated(q, m) * rotated(k, m + delta)).sum(-1)  # (1001,)
    print(f"offset {delta:5d}: score {scores[0]:+.4f}, "
          f"spread over 1,001 positions {scores.max() - scores.min():.1e}")
norms = rotated(q, m).norm(dim=-1)
print(f"|R_m q| / |q| in [{norms.min() / q.norm():.6f}, {norms.max() / q.norm():.6f}]")

# %% [markdown]
# The same rotation written with complex numbers, as in the RoFormer paper: channel
# pair i, (x_i, x_(i + D/2)) in the "rotate half" layout, is the complex number
# x_i + j x_(i + D/2), and position p multiplies it by exp(j p θ_i).

# %% tags=["complex"]
x = torch.randn(2, 4, 50, D)  # (B, H, T, D)
p = torch.arange(50)
inv_freq = theta ** (-torch.arange(0, D, 2).float() / D)  # θ_i, (D/2,)
z = torch.complex(x[..., :D // 2], x[..., D // 2:])  # (B, H, T, D/2)
z = z * torch.polar(torch.ones(50, D // 2), torch.outer(p.float(), inv_freq))
as_complex = torch.cat([z.real, z.imag], dim=-1)
ours = apply_rope(x, cos[:50], sin[:50])
print(f"apply_rope vs complex rotation: max |difference| "
      f"{(ours - as_complex).abs().max():.1e}")
wavelengths = 2 * math.pi / inv_freq
print(f"wavelengths (tokens per full turn) for D={D}: {wavelengths[0]:.1f} "
      f"(pair 0) … {wavelengths[-1]:,.0f} (pair {D // 2 - 1})")

# %% [markdown]
# How similar is a vector to itself, rotated by Δ positions? For random vectors the
# expected value of q·R_Δ q / |q|² is the mean of cos(Δ θ_i) over the pairs: it
# starts at 1 and decays with distance, with ripples.

# %%
offsets = torch.arange(S["max_offset"] + 1).float()
expected = torch.cos(torch.outer(offsets, inv_freq)).mean(-1)  # (offsets,)
one = torch.randn(D)
cos_l, sin_l = rope_tables(D, S["max_offset"] + 1, theta)
rot = apply_rope(one.expand(len(offsets), D)[None, None], cos_l, sin_l)[0, 0]
sample = (rot @ one) / one.dot(one)  # (offsets,): one vector with itself at offset Δ
print(f"mean cos at Δ = 1: {expected[1]:.3f}, 10: {expected[10]:.3f}, "
      f"100: {expected[100]:.3f}, 1000: {expected[1000]:.3f}")

# %%
json.dump({"presets": rows, "wavelengths": [float(wavelengths[0]),
                                            float(wavelengths[-1])]},
          open("embeddings.json", "w"), indent=1)
fig, ax = plt.subplots(figsize=(6, 2.4))
im = ax.imshow(cos[:128].T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1,
               interpolation="nearest")
ax.set_xlabel("position p")
ax.set_ylabel("channel (pair i = i, i + D/2)")
fig.colorbar(im, ax=ax, label="cos(p θ_i)", fraction=0.04)
fig.tight_layout()
fig.savefig("rope_table.svg")

fig, ax = plt.subplots(figsize=(6, 2.6))
ax.plot(offsets, sample, color="#bc4c00", linewidth=0.5, alpha=0.5,
        label="one random vector")
ax.plot(offsets, expected, color="#0969da", linewidth=1.0,
        label="expected over random vectors")
ax.set_xscale("symlog", linthresh=10)
ax.axhline(0, color="#57606a", linewidth=0.5)
ax.set_xlabel("distance Δ between query and key positions (tokens)")
ax.set_ylabel("q·R_Δ q / |q|²")
ax.legend(frameon=False, loc="upper right")
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("rope_decay.svg")
