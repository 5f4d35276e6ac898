# %% [markdown]
# # Attention: the explicit path, the fused kernel, the mask, the cache
#
# We check that the explicit attention of `llm_reference.model` computes what
# PyTorch's fused `scaled_dot_product_attention` computes (MHA, GQA, MQA, with and
# without cached keys), that no position sees the future, train a one-layer GPT on a
# copying task and draw where its heads look, and compute the KV cache's size per
# token for real model shapes.

# %%
import json

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from llm_reference.model import GPT, KVCache, ModelConfig, explicit_attention
from llm_reference.plan import TRACKS, make_plan

BOOK = {"timeout": 300, "seed": 0,
        "settings": {"copy_vocab": 32, "copy_half": 16, "copy_steps": 200,
                     "copy_batch": 32, "lr": 3e-3}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])
torch.set_num_threads(1)

# %% [markdown]
# ## Explicit attention equals the fused kernel
#
# q has H heads, k and v have K; T queries are the last T of S positions.

# %% tags=["checkpoint"]
for name, H, K, T, S_ in [("MHA", 8, 8, 16, 16), ("GQA", 8, 2, 16, 16),
                          ("MQA", 8, 1, 16, 16), ("GQA, 11 cached", 8, 2, 5, 16)]:
    q = torch.randn(2, H, T, 32)  # (B, H, T, D)
    k, v = torch.randn(2, K, S_, 32), torch.randn(2, K, S_, 32)  # (B, K, S, D)
    ours = explicit_attention(q, k, v)
    # SDPA's own mask is aligned top-left; ours puts the T queries at the end.
    mask = torch.ones(T, S_, dtype=torch.bool).tril(diagonal=S_ - T)
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           enable_gqa=K != H)
    print(f"{name:15} H={H} K={K} T={T:2d} S={S_}: max |explicit - SDPA| = "
          f"{(ours - fused).abs().max():.1e}")

# %% [markdown]
# The whole model, both paths, same weights: and no position depends on a later one.

# %% tags=["causal"]
base = dict(vocab_size=512, context_length=64, n_layer=2, n_head=4, n_kv_head=2,
            d_model=64, position="rope")
sdpa = GPT(ModelConfig(**base, attention="sdpa")).eval()
explicit = GPT(ModelConfig(**base, attention="explicit")).eval()
explicit.load_state_dict(sdpa.state_dict())
idx = torch.randint(0, 512, (1, 64))
with torch.no_grad():
    logits, _ = sdpa(idx)
    print(f"GPT logits, explicit vs SDPA: max |difference| "
          f"{(explicit(idx)[0] - logits).abs().max():.1e}")
    changed = idx.clone()
    changed[0, 40] = (idx[0, 40] + 1) % 512  # a different token at position 40
    moved = (sdpa(changed)[0] - logits).abs().amax(dim=-1)[0]  # (T,)
print(f"after changing token 40: positions 0-39 moved by at most "
      f"{moved[:40].max():.1e}, positions 40-63 by at least {moved[40:].min():.1e}")

# %% [markdown]
# ## Where the heads look
#
# A copying task: 16 random symbols, then the same 16 again. The second half is
# predictable only by looking back 15 positions, so a one-layer GPT must learn to
# attend there. The loss counts only the predictable targets (the others are
# masked with -100, the ignore index).

# %% tags=["copy"]
V, L = S["copy_vocab"], S["copy_half"]
config = ModelConfig(vocab_size=V, context_length=2 * L, n_layer=1, n_head=2,
                     d_model=64, attention="explicit")
model = GPT(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=S["lr"], weight_decay=0.0)
generator = torch.Generator().manual_seed(BOOK["seed"])


def copy_batch(batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    half = torch.randint(0, V, (batch_size, L), generator=generator)
    seq = torch.cat([half, half], dim=1)  # (B, 2L)
    x, y = seq[:, :-1], seq[:, 1:].clone()  # (B, 2L - 1) each
    y[:, :L - 1] = -100  # the first half's successors are random: not scored
    return x, y


losses = []
for _ in range(S["copy_steps"]):
    x, y = copy_batch(S["copy_batch"])
    _, loss = model(x, targets=y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"copy loss: step 0 {losses[0]:.3f}, step {len(losses)} {losses[-1]:.4f}")

# %% [markdown]
# The attention weights of a fresh copy sequence, and for each head, where the
# queries of the second half look.

# %% tags=["heads"]
@torch.no_grad()
def attention_weights(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Layer 0's attention weights (B, H, T, T): explicit attention with v = I."""
    attn = model.blocks[0].attn
    B, T = idx.shape
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(T))  # (B, T, C)
    H, K, D = attn.n_head, attn.n_kv_head, attn.head_dim
    q, k, _ = attn.qkv(model.blocks[0].norm1(x)).split([H * D, K * D, K * D], -1)
    q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
    k = k.view(B, T, K, D).transpose(1, 2)  # (B, K, T, D)
    eye = torch.eye(T).expand(B, K, T, T)  # values = one-hot positions
    return explicit_attention(q, k, eye)  # (B, H, T, T): row t = weights of query t


x, _ = copy_batch(1)
weights = attention_weights(model, x)[0]  # (H, T, T)
rows = torch.arange(L - 1, 2 * L - 1)
for h in range(config.n_head):
    looks = weights[h, rows].argmax(-1) - rows  # where each query looks, relative
    share = weights[h, rows, rows - (L - 1)].mean()
    print(f"head {h}: second-half queries look back {sorted(set((-looks).tolist()))} "
          f"positions; mean weight on the copy source {share:.2f}")

# %% [markdown]
# ## The KV cache per token
#
# Bytes of keys and values stored per token, measured by allocating the
# reference's `KVCache` (bf16, one position) for each model shape: the Llama 2 7B
# shape with 32, 8 and 1 key/value heads, Llama 2 70B, GPT-2 small and this book's
# practitioner and researcher plans.

# %% tags=["kv"]
llama7b = dict(vocab_size=32000, context_length=4096, n_layer=32, n_head=32,
               d_model=4096, d_ff=11008, position="rope", norm="rmsnorm",
               mlp="swiglu", bias=False, tie_weights=False)
shapes = {
    "GPT-2 124M (MHA)": dict(vocab_size=50257, context_length=1024, n_layer=12,
                             n_head=12, d_model=768),
    "Llama 2 7B shape, MHA": dict(llama7b, n_kv_head=32),
    "same, GQA K=8": dict(llama7b, n_kv_head=8),
    "same, MQA K=1": dict(llama7b, n_kv_head=1),
    "Llama 2 70B (GQA K=8)": dict(llama7b, n_layer=80, n_head=64, n_kv_head=8,
                                  d_model=8192, d_ff=28672),
}
for track in ("practitioner", "researcher"):
    plan = make_plan(TRACKS[track].budgets[0], track)
    shapes[f"{track} plan"] = plan.model
kv_rows = []
for name, fields in shapes.items():
    config = ModelConfig(**fields)
    cache = KVCache(config, max_len=1, dtype=torch.bfloat16)  # one token
    per_token = sum(t.numel() * t.element_size() for t in cache.k + cache.v)
    with torch.device("meta"):
        params = GPT(config).num_parameters()
    kv_rows.append({"model": name, "layers": config.n_layer, "H": config.n_head,
                    "K": config.kv_heads, "D": config.head_dim, "params": params,
                    "size": f"{params / 1e9:.2f}B" if params >= 1e9
                    else f"{params / 1e6:.0f}M",
                    "kib_per_token": per_token / 1024,
                    "gib_4k": per_token * 4096 / 2**30})
    print(f"{name:34} L={config.n_layer:2d} H={config.n_head:2d} "
          f"K={config.kv_heads:2d} D={config.head_dim:3d} params {params / 1e9:6.2f}B  "
          f"{per_token / 1024:7.1f} KiB/token  {per_token * 4096 / 2**30:6.2f} GiB "
          "at 4,096 tokens")

# %%
json.dump({"losses": losses, "kv": kv_rows, "copy_half": L},
          open("attention.json", "w"), indent=1)
fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.1))
for h, ax in enumerate(axes):
    ax.imshow(weights[h], cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"head {h}", fontsize=9)
    ax.set_xlabel("key position", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.axvline(L - 0.5, color="#bc4c00", linewidth=0.6, linestyle="--")
    ax.axhline(L - 1.5, color="#bc4c00", linewidth=0.6, linestyle="--")
axes[0].set_ylabel("query position", fontsize=8)
fig.tight_layout()
fig.savefig("copy_attention.svg")
