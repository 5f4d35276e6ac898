"""A GPT, from the classic GPT-2 recipe to the modern Llama-style one, in one module.

Every choice that separates the two recipes is one field of `ModelConfig`
(model_config.py, imported here): learned or rotary positions, LayerNorm or RMSNorm,
a GELU or SwiGLU MLP, fewer key/value heads than query heads (GQA, MQA), biases and
weight tying, and a mixture of experts in place of each MLP (moe.py).

The network is the usual pre-norm decoder: token embeddings (plus learned position
embeddings), `n_layer` blocks of `x + attn(norm(x))` then `x + mlp(norm(x))`, a final
norm and a linear head that gives next-token logits. Shapes in comments use B (batch),
T (time: tokens in this call), S (keys seen, = cache + T), C (d_model), H (query
heads), K (key/value heads), D (head_dim = C / H) and V (vocab_size).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from . import flops
from .cross_entropy import IGNORE_INDEX, chunked_cross_entropy
from .errors import UserError
from .model_config import ModelConfig
from .moe import MoE

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


def rope_tables(head_dim: int, max_len: int, theta: float = 10000.0,
                scaling: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, each (max_len, head_dim).

    Channel pair i of a head turns by angle position * theta^(-2i / head_dim): fast
    rotations for the first pairs, slow ones for the last. We use the "rotate half"
    layout of HF Llama: pair i is channels (i, i + head_dim/2), so the angle table is
    the per-pair angles written twice, side by side. `scaling` (Llama 3.1's
    rope_scaling) slows the low frequencies down: see `llama3_inv_freq`.
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    if scaling is not None:
        inv_freq = llama3_inv_freq(inv_freq, scaling)
    angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (max_len, D/2)
    angles = torch.cat((angles, angles), dim=-1)  # (max_len, D)
    return angles.cos(), angles.sin()


def llama3_inv_freq(inv_freq: torch.Tensor, scaling: dict) -> torch.Tensor:
    """Llama 3.1's RoPE scaling of the per-pair frequencies (D/2,).

    A pair whose wavelength 2 pi / f is short next to the original context (under
    original / high_freq_factor) keeps its frequency: it already turns many times
    within the context. A pair whose wavelength is long (over original /
    low_freq_factor) is slowed down by `factor`, so positions up to factor x the
    original context give angles it saw in training. In between, it is a linear
    blend of the two in original / wavelength.
    """
    original = scaling["original_max_position_embeddings"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    wavelength = 2 * math.pi / inv_freq  # (D/2,)
    blend = ((original / wavelength - low) / (high - low)).clamp(0.0, 1.0)  # (D/2,)
    scaled = blend * inv_freq + (1 - blend) * inv_freq / scaling["factor"]
    return torch.where(wavelength < original / high, inv_freq, scaled)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair of x (B, heads, T, D) by its position's angle.

    cos and sin are (T, D), the rows for this call's positions. After the rotation
    the dot product q·k depends only on the distance between the two positions.
    The tables are float32; they are cast to x's dtype so that bf16 q and k stay bf16.
    """
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
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


def flash_attention_applies(q: torch.Tensor, mask: torch.Tensor | None) -> bool:
    """Whether SDPA can run its flash kernel on q (B, H, T, D): a CUDA GPU of compute
    capability 8.0 or more (Ampere), 16-bit q, head_dim <= 256 and no explicit mask.
    The other kernels take grouped k/v heads only by falling back to plain math."""
    return (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
            and q.size(-1) <= 256 and mask is None and _is_ampere_or_newer(q.device))


@torch.compiler.assume_constant_result  # a fact of the GPU: no graph break
def _is_ampere_or_newer(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device) >= (8, 0)


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
            if K != H and not flash_attention_applies(q, mask):
                # only the flash kernel shares k/v heads itself (enable_gqa); the
                # others would fall back to the T x T math kernel, so give them
                # one k/v head per query head instead
                k = k.repeat_interleave(H // K, dim=1)  # (B, H, S, D)
                v = v.repeat_interleave(H // K, dim=1)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=past == 0,
                enable_gqa=k.size(1) != H)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, H * D)  # (B, T, H*D): heads side by side
        return self.resid_dropout(self.proj(y))

    def decode(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
               cache: KVCache, rows: torch.Tensor, positions: torch.Tensor,
               seen: torch.Tensor) -> torch.Tensor:
        """One new token for each of B sequences, each at its own position.

        x is (B, 1, C); sequence b lives in row rows[b] of `cache` and its new token
        sits at positions[b]. Its key and value are written there, and it attends to
        keys 0 .. positions[b] of its row: the mask `seen` (B, 1, 1, S), S the
        longest one's length, hides the rest.
        """
        B, T, C = x.shape
        H, K, D = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.qkv(x).split([H * D, K * D, K * D], dim=-1)
        q, k = q.view(B, T, H, D), k.view(B, T, K, D)
        if self.q_norm is not None:  # Qwen3: normalise each head before RoPE
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.transpose(1, 2)  # (B, H, 1, D)
        k = k.transpose(1, 2)  # (B, K, 1, D)
        v = v.view(B, T, K, D).transpose(1, 2)  # (B, K, 1, D)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        cache.k[self.layer][rows, :, positions] = k[:, :, 0]  # (B, K, D)
        cache.v[self.layer][rows, :, positions] = v[:, :, 0]
        S = seen.size(-1)
        keys = cache.k[self.layer][rows, :, :S]  # (B, K, S, D)
        values = cache.v[self.layer][rows, :, :S]
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=seen,
                                           enable_gqa=K != H)  # (B, H, 1, D)
        return self.proj(y.transpose(1, 2).reshape(B, T, H * D))


# ------------------------------------------------------------------------------ MLP


class MLP(nn.Module):
    """The GPT-2 feed-forward layer: down(gelu(up(x))).

    GELU uses the tanh approximation, as GPT-2 did ("gelu_new" in HF transformers),
    so GPT-2 weights give the same logits here. `width` is the hidden width
    (default: the config's ff_dim; an expert of a mixture may differ).
    """

    def __init__(self, config: ModelConfig, width: int | None = None):
        super().__init__()
        width = width or config.ff_dim
        self.up = nn.Linear(config.d_model, width, bias=config.bias)
        self.down = nn.Linear(width, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.dropout(self.down(F.gelu(self.up(x), approximate="tanh")))


class SwiGLU(nn.Module):
    """The Llama feed-forward layer: down(silu(gate(x)) * up(x)).

    A gated linear unit: one projection, through SiLU, decides how much of the other
    passes, channel by channel. `width` as in `MLP`.
    """

    def __init__(self, config: ModelConfig, width: int | None = None):
        super().__init__()
        width = width or config.ff_dim
        self.gate = nn.Linear(config.d_model, width, bias=config.bias)
        self.up = nn.Linear(config.d_model, width, bias=config.bias)
        self.down = nn.Linear(width, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.dropout(self.down(F.silu(self.gate(x)) * self.up(x)))


def make_mlp(config: ModelConfig, width: int | None = None) -> nn.Module:
    """The recipe's MLP (GELU or SwiGLU) with `width` hidden units."""
    if config.mlp == "swiglu":
        return SwiGLU(config, width)
    return MLP(config, width)


# ---------------------------------------------------------------------------- model


class Block(nn.Module):
    """One transformer layer, pre-norm: x + attn(norm(x)), then x + mlp(norm(x)).

    The MLP is dense, or a mixture of experts when config.moe_experts > 0.
    """

    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.norm2 = make_norm(config)
        if config.is_moe:
            self.mlp = MoE(config, lambda width: make_mlp(config, width))
        else:
            self.mlp = make_mlp(config)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, kv_cache)  # (B, T, C)
        return x + self.mlp(self.norm2(x))  # (B, T, C)

    def decode(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
               cache: KVCache, rows: torch.Tensor, positions: torch.Tensor,
               seen: torch.Tensor) -> torch.Tensor:
        """`forward` for one token per sequence at per-sequence positions."""
        x = x + self.attn.decode(self.norm1(x), rope, cache, rows, positions, seen)
        return x + self.mlp(self.norm2(x))  # (B, 1, C)


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
                                   config.rope_theta, config.rope_scaling)
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
        # (Each expert of a mixture is an MLP whose output joins the stream.)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            for mlp in block.mlp.modules():
                if isinstance(mlp, (MLP, SwiGLU)):
                    nn.init.normal_(mlp.down.weight, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: KVCache | None = None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(logits (B, T, V), None) for token ids idx (B, T); (None, loss) with targets.

        With `targets` (B, T) the loss is the mean cross-entropy over positions whose
        target is not -100 (the ignore index, used to mask prompts when finetuning),
        computed without holding all the logits, which training does not need.
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
        x = self.norm_f(x)  # (B, T, C)
        if targets is None:
            return self.head(x), None  # (B, T, V)
        # training: the loss alone; the (B, T, V) logits never exist whole
        return None, self.loss(x, targets)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) of final hidden states x (B, T, C)."""
        if self.lm_head is not None:
            return self.lm_head(x)
        return F.linear(x, self.tok_emb.weight)  # the tied head

    def loss(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the head's logits on x (B, T, C) against targets
        (B, T), skipping targets of -100, chunk by chunk (see cross_entropy.py).

        A head that is not a plain matrix (an int8 or LoRA-adapted lm_head) gets
        the ordinary cross-entropy of its full logits.
        """
        head = self.lm_head
        if head is None or type(head) is nn.Linear:
            weight = self.tok_emb.weight if head is None else head.weight  # (V, C)
            return chunked_cross_entropy(x.flatten(0, 1), weight, targets.flatten())
        return F.cross_entropy(head(x).flatten(0, 1), targets.flatten(),
                               ignore_index=IGNORE_INDEX)

    def compile(self, **options: Any) -> None:
        """`torch.compile` each block and the loss, in place.

        Not the whole forward: DDP and FSDP2 hook into the modules (FSDP2 gathers a
        block's weights just before it runs), and a graph compiled around those
        hooks is one Dynamo gives up on, running the model eagerly. One graph per
        block leaves the hooks between graphs; the blocks share their code, so they
        share the compiled graph too.
        """
        for block in self.blocks:
            block.compile(**options)
        self.loss = torch.compile(self.loss, **options)

    @torch.inference_mode()
    def decode_step(self, tokens: torch.Tensor, positions: torch.Tensor,
                    cache: KVCache, rows: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, V) for one new token per sequence: batched decoding.

        `forward` with a cache puts every sequence of the batch at the same position.
        A server's sequences started at different times, so here sequence b feeds
        tokens[b] at positions[b], keeping its keys and values in row rows[b] of
        `cache` (a pool shared by all; its `pos` is not used). All (B,) int64.
        """
        x = self.tok_emb(tokens[:, None])  # (B, 1, C)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions[:, None])
        else:  # each row its own angles: (B, 1, 1, D), broadcast over the heads
            rope = (self.rope_cos[positions][:, None, None],
                    self.rope_sin[positions][:, None, None])
        S = int(positions.max()) + 1  # keys of the longest sequence
        seen = torch.arange(S, device=x.device) <= positions[:, None]  # (B, S)
        for block in self.blocks:
            x = block.decode(x, rope, cache, rows, positions,
                             seen[:, None, None, :])  # (B, 1, C)
        x = self.norm_f(x[:, 0])  # (B, C)
        if self.lm_head is not None:
            return self.lm_head(x)  # (B, V)
        return F.linear(x, self.tok_emb.weight)  # (B, V), tied head

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
        """Training FLOPs per token (forward + backward): 6 N' + 12 L d T.

        Counted from the config by `flops.flops_per_token`, the formula the planner
        uses too; see there for where each term comes from.
        """
        return flops.flops_per_token(self.config)
