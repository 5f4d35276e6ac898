"""How much memory training and generation take: states, activations, KV cache.

A training step holds, per device, the model states (weights, gradients and the
optimizer's moments), the activations the backward pass needs, and the logits. A
generating model holds its weights and the keys and values of every token it has
seen (the KV cache). Each function here counts one of these from a `ModelConfig`,
with its source; the planner adds them up to choose a micro-batch that fits.
"""

from __future__ import annotations

from .flops import count_parameters
from .model_config import ModelConfig

# Training state per parameter, in bytes, by precision scheme. "mixed" is the
# classic scheme of the ZeRO paper (Rajbhandari et al. 2020, section 3.1): fp16
# weights and gradients (2 + 2) plus K = 12 bytes of fp32 optimizer state (master
# weights 4, Adam's momentum 4 and variance 4) = 16. PyTorch autocast, which our
# trainer uses, keeps fp32 weights and gradients and casts weights to 16 bits on
# the fly, caching the copies for the step: 4 + 4 + 4 + 4 + 2 = 18. DDP keeps
# the gradients in its communication buckets; our trainer wraps the model with
# gradient_as_bucket_view=True, so the gradients *are* views of the buckets and
# nothing is added (without it DDP keeps a second copy: +4, 22). So: 16-18 bytes
# per parameter whatever the precision, 16 in pure fp32.
BYTES_PER_PARAM: dict[str, dict[str, int]] = {
    "float32": {"weights": 4, "gradients": 4, "adam_m": 4, "adam_v": 4},
    "autocast": {"weights": 4, "gradients": 4, "adam_m": 4, "adam_v": 4,
                 "16-bit weight copies": 2},
    "mixed": {"16-bit weights": 2, "16-bit gradients": 2, "fp32 master weights": 4,
              "adam_m": 4, "adam_v": 4},
}
USABLE_MEMORY = 0.9  # of a device's memory: the CUDA context, allocator fragmentation
# The model computes its cross-entropy over chunks of this many tokens (B x T
# flattened), so only one chunk's logits exist at a time: with V = 32768 a chunk
# is 8192 x 32768 x 4 bytes = 1 GiB of fp32 logits, where the whole batch of a
# 16 x 2048 micro-batch would be 4 GiB (plus as much again for their gradient).
LOSS_CHUNK_TOKENS = 8192


def state_bytes_per_param(dtype: str) -> int:
    """Bytes per parameter of weights, gradients and AdamW state in our trainer."""
    scheme = "float32" if dtype == "float32" else "autocast"
    return sum(BYTES_PER_PARAM[scheme].values())


def activation_bytes_per_layer(seq: int, batch: int, d_model: int, n_head: int,
                               bytes_per_value: int = 2, flash: bool = True) -> float:
    """Activations one transformer layer keeps for the backward pass, in bytes.

    Korthikanti et al. 2022 ("Reducing activation recomputation in large
    transformer models", eq. 1), for 16-bit activations and no parallelism:
    s b h (34 + 5 a s / h), with s the sequence length, b the micro-batch, h the
    width and a the heads. The 34 s b h are the inputs of the layer's matmuls,
    norms, GELU and dropout masks; the 5 a s^2 b are the attention scores, the
    softmax and its dropout mask. Flash attention (PyTorch's SDPA on GPU) never
    stores the s x s scores, so with flash=True that term is 0, which is the same
    count as their "selective recomputation". The formula assumes a GELU MLP of
    4 h; a SwiGLU of 8/3 h stores ~20 % more in the MLP, and fp32 activations
    (bytes_per_value=4) take twice the space: the result is an approximation.
    """
    per_token = 34 + (0 if flash else 5 * n_head * seq / d_model)
    return seq * batch * d_model * per_token * bytes_per_value / 2


def training_memory(config: ModelConfig, micro_batch: int, dtype: str = "bfloat16",
                    checkpointing: bool = False, shards: int = 1) -> dict[str, float]:
    """Bytes one device needs to train `config` on micro-batches of `micro_batch`.

    - model states: parameters x state_bytes_per_param, divided by `shards` when
      FSDP/ZeRO-3 splits them across GPUs; a mixture of experts counts all its
      experts here (each has weights, gradients and moments), not the k active;
    - activations: n_layer x activation_bytes_per_layer; with activation
      checkpointing a layer keeps only its input (2 s b h bytes) and one layer at a
      time is recomputed in full during the backward pass; a mixture of experts
      runs each token through k MLPs, so its layer keeps the MLP's share of the
      34 s b h (19 s b h: the inputs of its two matmuls, the GELU's and the
      dropout mask) k times over;
    - logits: the model computes its loss LOSS_CHUNK_TOKENS tokens at a time
      and keeps no (B, T, V) logits through the backward pass, so at most one
      chunk is alive: its fp32 logits and their gradient, 8 bytes per logit
      (instead of the whole s b V that an unchunked loss keeps).
    """
    c = config
    s, L, d, V = c.context_length, c.n_layer, c.d_model, c.vocab_size
    act_bytes = 4 if dtype == "float32" else 2
    states = count_parameters(c) * state_bytes_per_param(dtype) / shards
    layer = activation_bytes_per_layer(s, micro_batch, d, c.n_head, act_bytes)
    if c.is_moe:  # the k - 1 extra MLP passes of each token
        layer += (c.moe_top_k - 1) * 19 * s * micro_batch * d * act_bytes / 2
    if checkpointing:
        activations = L * s * micro_batch * d * act_bytes + layer
    else:
        activations = L * layer
    logits = min(LOSS_CHUNK_TOKENS, s * micro_batch) * V * (4 + 4)
    return {"model_states": states, "activations": activations, "logits": logits,
            "total": states + activations + logits}


def kv_cache_bytes(config: ModelConfig, tokens: int, batch: int = 1,
                   bytes_per_value: int = 2) -> float:
    """The KV cache: 2 (k and v) x L x n_kv_head x head_dim x bytes, per token.

    Grouped-query attention divides it by n_head / n_kv_head: that is its point.
    """
    c = config
    per_token = 2 * c.n_layer * c.kv_heads * c.head_dim * bytes_per_value
    return per_token * tokens * batch
