"""What a GPT costs: its parameters, and the FLOPs of each token, from its config.

These formulas are the one place the project counts them: `GPT.flops_per_token`
(model.py) and the planner (plan.py) both call them, and a test checks
`count_parameters` against the parameters of a real `GPT` for every recipe. Only
arithmetic on a `ModelConfig`, no torch.
"""

from __future__ import annotations

from .model_config import ModelConfig


def mlp_parameters(config: ModelConfig, width: int) -> int:
    """One MLP of the recipe with `width` hidden units: two matrices for GELU,
    three for SwiGLU, and their biases."""
    d, bias = config.d_model, config.bias
    if config.mlp == "swiglu":
        return 3 * d * width + bias * (2 * width + d)
    return 2 * d * width + bias * (width + d)


def count_parameters(config: ModelConfig, non_embedding: bool = False,
                     active: bool = False) -> int:
    """Parameters of the GPT in model.py, counted from its config.

    Per layer: two norms, the fused q/k/v projection (n_head + 2 n_kv_head heads of
    head_dim), the output projection (n_head heads back to d_model), and the MLP
    (two matrices for GELU, three for SwiGLU). Around the layers: the token
    embedding (which is also the output head when tied), learned positions, the
    final norm, an untied head.
    non_embedding=True leaves out the vocabulary and position tables (Kaplan et al.
    2020's convention).

    A mixture of experts (moe_experts > 0) has, per layer, the router (d_model x
    E), E experts and the shared ones. All of them are held in memory, but a token
    runs through only k experts: active=True counts those k (and the router and
    shared experts), the parameters that cost compute. Dense: the same either way.
    """
    c = config
    V, T, L, d, f = c.vocab_size, c.context_length, c.n_layer, c.d_model, c.ff_dim
    heads, bias, hd = c.n_head + 2 * c.kv_heads, c.bias, c.head_dim
    norm = d * (2 if c.norm == "layernorm" and bias else 1)  # weight (+ bias)
    attention = (d * heads * hd + c.n_head * hd * d  # q/k/v and output projections
                 + c.has_qkv_bias * heads * hd + bias * d  # their biases
                 + c.qk_norm * 2 * hd)  # Qwen3's q and k norms
    mlp = mlp_parameters(c, f)
    if c.is_moe:
        used = c.moe_top_k if active else c.moe_experts
        shared = mlp_parameters(c, c.moe_shared * f) if c.moe_shared else 0
        mlp = d * c.moe_experts + used * mlp + shared  # router, experts, shared
    total = L * (2 * norm + attention + mlp) + norm
    if not non_embedding:
        total += V * d * (1 if c.tie_weights else 2)
        total += T * d if c.position == "learned" else 0
    return total


def training_flops(n_params: float, tokens: float) -> float:
    """C = 6 N D: the classic estimate of training compute (Kaplan et al. 2020).

    Each weight does one multiply-add (2 FLOPs) per token forward, and twice that
    backward (the gradient with respect to the input, and with respect to the
    weight): 2 + 4 = 6 FLOPs per parameter per token.
    """
    return 6.0 * n_params * tokens


def matmul_weights(config: ModelConfig) -> int:
    """N': the weights a token is multiplied by.

    The non-embedding parameters plus the output head's d_model x vocab_size matrix:
    an embedding lookup costs nothing, the head is a matmul even when tied. Of a
    mixture of experts, only the active parameters: the k experts a token uses.
    """
    head = config.d_model * config.vocab_size
    return count_parameters(config, non_embedding=True, active=True) + head


def flops_per_token(config: ModelConfig) -> float:
    """Training FLOPs per token, forward + backward: 6 N' + 12 L d T.

    PaLM (Chowdhery et al. 2022, appendix B) and nanoGPT count it so. The first
    term is the weights (`matmul_weights`): 2 FLOPs per multiply-add forward, 4
    backward. The second is attention itself, which has no weights: per layer, the
    scores q.k and the weighted sum of values are each 2 d T FLOPs per token forward
    (T keys, width d), so 4 L d T forward and 12 L d T with the backward. It counts
    the whole T x T square (no discount for the causal mask, as flash attention's
    work is usually counted) and grows with the context: at T = 1024 it is 13 % of
    GPT-2 small's total, 8 % for the beginner's tiny model at T = 256.
    Kaplan et al. 2020 (table 1) count only half of it (2 L T d forward).
    """
    c = config
    attention = 12.0 * c.n_layer * c.d_model * c.context_length
    return 6.0 * matmul_weights(c) + attention


def forward_flops_per_token(config: ModelConfig, context: float | None = None
                            ) -> float:
    """Forward-only FLOPs for one token that attends to `context` earlier tokens.

    2 N' + 4 L d t: the weights once forward, attention over t keys. With a KV
    cache, generating the token at position t costs exactly this, since the keys
    and values of earlier tokens are stored, not recomputed. context=None means a
    full window (evaluation), which is a third of `flops_per_token`.
    """
    c = config
    t = c.context_length if context is None else context
    return 2.0 * matmul_weights(c) + 4.0 * c.n_layer * c.d_model * t
