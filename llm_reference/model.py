"""A GPT, from the classic GPT-2 recipe to the modern Llama-style one, in one module.

Every choice that separates the two recipes is one field of `ModelConfig`:

| field       | GPT-2 recipe  | Llama-style recipe         |
| ----------- | ------------- | -------------------------- |
| position    | "learned"     | "rope"                     |
| norm        | "layernorm"   | "rmsnorm"                  |
| mlp         | "gelu"        | "swiglu"                   |
| n_kv_head   | = n_head (MHA)| < n_head (GQA), 1 (MQA)    |
| bias        | True          | False                      |
| tie_weights | True          | False (or True when small) |

The network is the usual pre-norm decoder: token embeddings (plus learned position
embeddings), `n_layer` blocks of `x + attn(norm(x))` then `x + mlp(norm(x))`, a final
norm and a linear head that gives next-token logits. Shapes in comments use B (batch),
T (time: tokens in this call), S (keys seen, = cache + T), C (d_model), H (query
heads), K (key/value heads), D (head_dim = C / H) and V (vocab_size).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from .errors import UserError

POSITIONS = ("learned", "rope")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
ATTENTIONS = ("sdpa", "explicit")


@dataclass
class ModelConfig:
    """The shape and recipe of a GPT; the `[model]` table of a run's config.toml.

    `n_kv_head=None` means one key/value head per query head (MHA). `d_ff=None` means
    4 * d_model for GELU and ~8/3 * d_model rounded up to a multiple of 64 for SwiGLU
    (same parameter count as the GELU MLP, since SwiGLU has three matrices, not two).

    Three fields exist so that open models load as they are (see hf.py): `d_head`
    (None = d_model / n_head; Qwen3 uses wider heads), `qkv_bias` (None = `bias`;
    Qwen2 has biases on q, k and v only) and `qk_norm` (Qwen3's RMSNorm of each
    query and key head before RoPE).
    """

    vocab_size: int = 8192
    context_length: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None
    d_model: int = 256
    d_ff: int | None = None
    d_head: int | None = None
    position: str = "learned"  # "learned" | "rope"
    rope_theta: float = 10000.0
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    norm_eps: float = 1e-5
    mlp: str = "gelu"  # "gelu" | "swiglu"
    bias: bool = True
    qkv_bias: bool | None = None
    qk_norm: bool = False
    tie_weights: bool = True
    dropout: float = 0.0
    attention: str = "sdpa"  # "sdpa" | "explicit"

    def __post_init__(self) -> None:
        self._validate()

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, or n_head when it is None."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def head_dim(self) -> int:
        """Channels per head: d_head, or d_model / n_head when it is None."""
        return self.d_model // self.n_head if self.d_head is None else self.d_head

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def ff_dim(self) -> int:
        """Hidden width of the MLP: d_ff, or the recipe's default when it is None."""
        if self.d_ff is not None:
            return self.d_ff
        if self.mlp == "swiglu":
            return 64 * math.ceil(8 * self.d_model / 3 / 64)
        return 4 * self.d_model

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build a config from a dict (a TOML table); unknown keys are a UserError."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in known:
                raise UserError(f"model.{key}: unknown field; known fields are "
                                f"{', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """All fields with n_kv_head and d_ff resolved (TOML has no null)."""
        d = dataclasses.asdict(self)
        d["n_kv_head"], d["d_ff"] = self.kv_heads, self.ff_dim
        d["d_head"], d["qkv_bias"] = self.head_dim, self.has_qkv_bias
        return d

    def _validate(self) -> None:
        def fail(field: str, why: str) -> None:
            value = getattr(self, field)
            raise UserError(f"model.{field} = {value!r}: {why}")

        for field in ("vocab_size", "context_length", "n_layer", "n_head", "d_model",
                      "n_kv_head", "d_ff", "d_head"):
            value = getattr(self, field)
            if value is None and field in ("n_kv_head", "d_ff", "d_head"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(field, "must be a positive integer")
        for field, choices in (("position", POSITIONS), ("norm", NORMS),
                               ("mlp", MLPS), ("attention", ATTENTIONS)):
            if getattr(self, field) not in choices:
                fail(field, f"must be one of {', '.join(map(repr, choices))}")
        for field in ("bias", "qkv_bias", "qk_norm", "tie_weights"):
            value = getattr(self, field)
            if not isinstance(value, bool) and not (field == "qkv_bias"
                                                    and value is None):
                fail(field, "must be true or false")
        for field in ("rope_theta", "norm_eps", "dropout"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                fail(field, "must be a number")
            setattr(self, field, float(value))
        if self.rope_theta <= 0:
            fail("rope_theta", "must be > 0")
        if self.norm_eps <= 0:
            fail("norm_eps", "must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", "must be in [0, 1)")
        if self.d_head is None and self.d_model % self.n_head:
            fail("n_head", f"must divide d_model = {self.d_model}")
        if self.n_head % self.kv_heads:
            fail("n_kv_head", f"must divide n_head = {self.n_head} (1 = MQA)")
        if self.position == "rope" and self.head_dim % 2:
            fail("n_head", f"RoPE needs an even head_dim, got {self.head_dim}")


# ---------------------------------------------------------------------------- norms


class RMSNorm(nn.Module):
    """Root-mean-square norm: x / sqrt(mean(x^2) + eps) * weight.

    LayerNorm subtracts the mean and divides by the standard deviation; RMSNorm keeps
    only the rescaling (no mean, no bias), which works as well and costs less.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., C) -> (..., C)
        x32 = x.float()  # the mean of squares in float32, also under bf16 autocast
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def make_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)


# ----------------------------------------------------------------------------- RoPE


def rope_tables(head_dim: int, max_len: int, theta: float = 10000.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, each (max_len, head_dim).

    Channel pair i of a head turns by angle position * theta^(-2i / head_dim): fast
    rotations for the first pairs, slow ones for the last. We use the "rotate half"
    layout of HF Llama: pair i is channels (i, i + head_dim/2), so the angle table is
    the per-pair angles written twice, side by side.
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (max_len, D/2)
    angles = torch.cat((angles, angles), dim=-1)  # (max_len, D)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair of x (B, heads, T, D) by its position's angle.

    cos and sin are (T, D), the rows for this call's positions. After the rotation
    the dot product q·k depends only on the distance between the two positions.
    """
    return x * cos + rotate_half(x) * sin


# ------------------------------------------------------------------------ attention


class KVCache:
    """Keys and values of the tokens seen so far, preallocated for every layer.

    Generation feeds one new token per step; attention needs the keys and values of
    all earlier tokens, which do not change, so we keep them instead of recomputing
    them. Each layer holds k and v of shape (B, K, max_len, D) (K key/value heads, so
    GQA and MQA shrink the cache). `pos` counts the tokens stored; `GPT.forward`
    advances it after all layers have written their new tokens.
    """

    def __init__(self, config: ModelConfig, batch_size: int = 1,
                 max_len: int | None = None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.max_len = max_len or config.context_length
        shape = (batch_size, config.kv_heads, self.max_len, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype)
                  for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype)
                  for _ in range(config.n_layer)]
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, K, T, D) after the cached tokens; return all (B, K, S, D)."""
        end = self.pos + k.size(2)
        self.k[layer][:, :, self.pos:end] = k
        self.v[layer][:, :, self.pos:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, n: int) -> None:
        self.pos += n

    def reset(self) -> None:
        self.pos = 0


def causal_mask(T: int, S: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, S) bool, True where query t may attend key s: the last T of S positions.

    Query t sits at position S - T + t, so it sees keys 0 .. S - T + t.
    """
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       dropout_p: float = 0.0) -> torch.Tensor:
    """Causal attention written out: what `F.scaled_dot_product_attention` computes.

    q is (B, H, T, D); k and v are (B, K, S, D) with S >= T (earlier tokens cached).
    """
    H, K = q.size(1), k.size(1)
    k = k.repeat_interleave(H // K, dim=1)  # (B, H, S, D): heads share a k/v head
    v = v.repeat_interleave(H // K, dim=1)
    T, S = q.size(2), k.size(2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S)
    mask = causal_mask(T, S, device=q.device)
    scores = scores.masked_fill(~mask, float("-inf"))  # no peeking at the future
    weights = F.softmax(scores, dim=-1)  # (B, H, T, S), each row sums to 1
    weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (B, H, T, D): a weighted sum of the values


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with H query heads and K key/value heads.

    K = H is classic multi-head attention (MHA); 1 < K < H is grouped-query attention
    (GQA: H/K query heads share each key/value head); K = 1 is multi-query (MQA).
    """

    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer  # which slot of a KVCache is ours
        self.n_head, self.n_kv_head = config.n_head, config.kv_heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.explicit = config.attention == "explicit"
        qkv_dim = (self.n_head + 2 * self.n_kv_head) * self.head_dim
        self.qkv = nn.Linear(config.d_model, qkv_dim,  # q, k, v fused
                             bias=config.has_qkv_bias)
        self.proj = nn.Linear(self.n_head * self.head_dim, config.d_model,
                              bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.q_norm = self.k_norm = None
        if config.qk_norm:  # one RMSNorm over D, shared by all query (key) heads
            self.q_norm = RMSNorm(self.head_dim, eps=config.norm_eps)
            self.k_norm = RMSNorm(self.head_dim, eps=config.norm_eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        H, K, D = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.qkv(x).split([H * D, K * D, K * D], dim=-1)
        q, k = q.view(B, T, H, D), k.view(B, T, K, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.transpose(1, 2)  # (B, H, T, D)
        k = k.transpose(1, 2)  # (B, K, T, D)
        v = v.view(B, T, K, D).transpose(1, 2)  # (B, K, T, D)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        past = 0
        if kv_cache is not None:
            past = kv_cache.pos
            k, v = kv_cache.update(self.layer, k, v)  # (B, K, S, D), S = past + T
        dropout_p = self.dropout if self.training else 0.0
        if self.explicit:
            y = explicit_attention(q, k, v, dropout_p)
        else:
            # Without a cache (past = 0) the mask is plain causal; one new token may
            # see every cached key; a multi-token chunk after a cache needs the
            # offset mask.
            mask = causal_mask(T, past + T, x.device) if past and T > 1 else None
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=past == 0,
                enable_gqa=K != H)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, H * D)  # (B, T, H*D): heads side by side
        return self.resid_dropout(self.proj(y))


# ------------------------------------------------------------------------------ MLP


class MLP(nn.Module):
    """The GPT-2 feed-forward layer: down(gelu(up(x))).

    GELU uses the tanh approximation, as GPT-2 did ("gelu_new" in HF transformers),
    so GPT-2 weights give the same logits here.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.ff_dim, bias=config.bias)
        self.down = nn.Linear(config.ff_dim, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.dropout(self.down(F.gelu(self.up(x), approximate="tanh")))


class SwiGLU(nn.Module):
    """The Llama feed-forward layer: down(silu(gate(x)) * up(x)).

    A gated linear unit: one projection, through SiLU, decides how much of the other
    passes, channel by channel.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(config.d_model, config.ff_dim, bias=config.bias)
        self.up = nn.Linear(config.d_model, config.ff_dim, bias=config.bias)
        self.down = nn.Linear(config.ff_dim, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.dropout(self.down(F.silu(self.gate(x)) * self.up(x)))


# ---------------------------------------------------------------------------- model


class Block(nn.Module):
    """One transformer layer, pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.norm2 = make_norm(config)
        self.mlp = SwiGLU(config) if config.mlp == "swiglu" else MLP(config)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, kv_cache)  # (B, T, C)
        return x + self.mlp(self.norm2(x))  # (B, T, C)


class GPT(nn.Module):
    """A decoder-only transformer language model."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = None
        if config.position == "learned":
            self.pos_emb = nn.Embedding(config.context_length, config.d_model)
        else:  # RoPE: angle tables, not parameters, and not saved with the weights
            cos, sin = rope_tables(config.head_dim, config.context_length,
                                   config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm_f = make_norm(config)
        self.gradient_checkpointing = False  # set by the trainer; see forward
        # Tied weights: the head reuses tok_emb.weight, so there is no lm_head at all.
        self.lm_head = None
        if not config.tie_weights:
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2's scaled init: each block adds two outputs to the residual stream, so
        # their projections start smaller, keeping the stream's variance flat.
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.down.weight, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: KVCache | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits (B, T, V) for token ids idx (B, T), and the loss.

        With `targets` (B, T) the loss is the mean cross-entropy over positions whose
        target is not -100 (the ignore index, used to mask prompts when finetuning).
        With a `kv_cache`, idx holds only the new tokens: they sit at positions
        cache.pos .. cache.pos + T - 1 and attend to everything cached before them.
        """
        B, T = idx.shape
        start = kv_cache.pos if kv_cache is not None else 0
        if start + T > self.config.context_length:
            raise UserError(f"sequence of {start + T} tokens is longer than "
                            f"model.context_length = {self.config.context_length}; "
                            "crop it to the last context_length tokens")
        x = self.tok_emb(idx)  # (B, T, C)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(start, start + T, device=idx.device))
        else:
            rope = self.rope_cos[start:start + T], self.rope_sin[start:start + T]
        x = self.dropout(x)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                # Activation checkpointing: keep only the block's input and run the
                # block again in the backward pass to get what it needs; the same
                # result for less memory and about a third more compute.
                x = torch.utils.checkpoint.checkpoint(
                    block, x, rope, kv_cache, use_reentrant=False)  # (B, T, C)
            else:
                x = block(x, rope, kv_cache)  # (B, T, C)
        if kv_cache is not None:
            kv_cache.advance(T)
        x = self.norm_f(x)
        if self.lm_head is not None:
            logits = self.lm_head(x)  # (B, T, V)
        else:
            logits = F.linear(x, self.tok_emb.weight)  # (B, T, V), tied head
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                   ignore_index=-100)
        return logits, loss

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters; tied weights count once.

        non_embedding=True leaves out the vocabulary and position tables (tok_emb,
        pos_emb and an untied lm_head), the convention of Kaplan et al. (2020) for
        scaling laws.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
            if self.lm_head is not None:
                n -= self.lm_head.weight.numel()
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward), PaLM appendix B.

        6N + 12 * n_layer * d_model * context_length. N counts the weights a token is
        multiplied by: the non-embedding parameters plus the output head's d_model x
        vocab_size matrix (the head is a matmul even when tied; embedding lookups
        cost no FLOPs). Each multiply-add is 2 FLOPs forward and 4 backward, hence 6
        per weight; the second term is attention's q·k and weights·v, 2 * 2 * C * T
        per layer forward, times 3 with the backward, at the full context (no
        discount for the causal mask).
        """
        c = self.config
        n = self.num_parameters(non_embedding=True) + c.d_model * c.vocab_size
        return 6.0 * n + 12.0 * c.n_layer * c.d_model * c.context_length
