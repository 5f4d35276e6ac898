"""model: the transformer block and the whole GPT's forward pass.

Protocol: a module (or any object) with two classes, both nn.Modules built from a
config dict (the fields of `ModelConfig.to_dict()`: vocab_size, context_length,
n_layer, n_head, n_kv_head, d_model, d_ff, position, rope_theta, norm, norm_eps,
mlp, bias, tie_weights, dropout, attention):

    Block(config)  .forward(x) -> x        # (B, T, C) -> (B, T, C), pre-norm
    GPT(config)    .forward(idx) -> logits # (B, T) -> (B, T, V), or (logits, loss)

A block is x + attn(norm1(x)), then x + mlp(norm2(x)); the block checks use learned
positions, so a block needs no RoPE. GELU is the tanh approximation (GPT-2's). The
checks load the reference's weights into yours, so name them as it does:

    tok_emb.weight (V, C)           pos_emb.weight (P, C)    [learned positions]
    blocks.N.norm1.weight, .bias    blocks.N.norm2.weight, .bias   [RMSNorm: no bias]
    blocks.N.attn.qkv.weight ((H + 2K) D, C), .bias: the q, k, v projections stacked
        in that order; q's head h is rows h D .. (h + 1) D - 1
    blocks.N.attn.proj.weight (C, C), .bias
    blocks.N.mlp.up.weight (F, C), .bias    blocks.N.mlp.down.weight (C, F), .bias
    blocks.N.mlp.gate.weight (F, C), .bias  [SwiGLU: down(silu(gate(x)) * up(x))]
    norm_f.weight, .bias            lm_head.weight (V, C)    [untied head only]

(.bias only when config["bias"]; a Block's names are those after `blocks.N.`.)
The GPT-2 recipe (learned positions, LayerNorm, GELU, MHA, tied head) is required;
the Llama-style one (RoPE, RMSNorm, SwiGLU, GQA, no bias, untied) is optional: raise
NotImplementedError for it and those checks are skipped.

Reference: `llm_reference.model.Block` and `GPT`.
Command: python -m llm_reference check model --impl my_model
Tolerance: float32, |Δ| <= 1e-4 + 1e-4 |expected|.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model import GPT, MLP, Block, ModelConfig
from .runner import Node, Suspect, as_tensor, expect_close, fail, generator, randn


class ReferenceBlock(Block):
    """`model.Block` built from a config dict, used without RoPE."""

    def __init__(self, config: dict):
        super().__init__(ModelConfig.from_dict(config), layer=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return super().forward(x, rope=None)


class ReferenceGPT(GPT):
    """`model.GPT` built from a config dict."""

    def __init__(self, config: dict):
        super().__init__(ModelConfig.from_dict(config))


node = Node(
    id="model",
    title="Transformer block, GPT, output head",
    protocol=__doc__,
    example="my_model",
    reference=lambda: SimpleNamespace(Block=ReferenceBlock, GPT=ReferenceGPT),
    parts=("Block", "GPT"),
)

TINY = dict(vocab_size=64, context_length=16, n_layer=2, n_head=4, d_model=32)
GPT2 = ModelConfig(**TINY).to_dict()
LLAMA = ModelConfig(**TINY, n_kv_head=2, position="rope", norm="rmsnorm",
                    mlp="swiglu", bias=False, tie_weights=False).to_dict()
LLAMA_BLOCK = {**LLAMA, "position": "learned"}
NAMES_HINT = ("name the weights as the reference does: tok_emb, pos_emb, "
              "blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.up, mlp.down}, "
              "norm_f (python -m llm_reference check --list model)")
ATOL = RTOL = 1e-4


def build(cls: Any, config: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls(dict(config)).eval()


def parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """Named parameters, a tied (shared) tensor once, as state_dict names it."""
    return dict(module.named_parameters())


def load_reference_weights(module: nn.Module, reference: nn.Module,
                           what: str) -> None:
    """Copy the reference's weights into the reader's module, by name."""
    try:
        missing, unexpected = module.load_state_dict(reference.state_dict(),
                                                     strict=False)
    except RuntimeError as e:  # a weight of another shape
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        fail(f"the reference's weights do not fit your {what}: {lines[-1]}",
             NAMES_HINT)
    # Buffers (RoPE tables, masks) and a second name of a tied weight may be absent.
    state = module.state_dict(keep_vars=True)  # the parameters themselves
    loaded = {id(state[name]) for name in state if name not in missing}
    params = {id(p) for p in module.parameters()}
    missing = [name for name in missing
               if id(state[name]) in params and id(state[name]) not in loaded]
    if missing or unexpected:
        fail(f"your {what}'s weights are named differently: it lacks "
             f"{unexpected[:3] or 'nothing'} and has {missing[:3] or 'nothing'} "
             f"that the reference does not", NAMES_HINT)


def logits_of(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    out = model(idx.clone())
    if isinstance(out, tuple):  # (logits, loss)
        out = out[0]
    return as_tensor(out, "logits")


def tokens(B: int, T: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 64, (B, T), generator=generator(seed))


def expect_same_count(impl_cls: Any, config: dict, what: str) -> None:
    ours = parameters(build(impl_cls, config))
    reference = parameters(build(ReferenceGPT, config))
    n_ours = sum(p.numel() for p in ours.values())
    n_ref = sum(p.numel() for p in reference.values())
    if n_ours == n_ref:
        return
    diff = next((f"; e.g. {n} is {tuple(p.shape)} in the reference"
                 for n, p in reference.items()
                 if n in ours and ours[n].shape != p.shape), "")
    fail(f"your {what} has {n_ours} parameters, the reference {n_ref}{diff}")


def expect_gpt_matches(impl_cls: Any, config: dict, what: str) -> None:
    reference = build(ReferenceGPT, config, seed=1)
    model = build(impl_cls, config)
    load_reference_weights(model, reference, what)
    idx = tokens(2, 8)
    with torch.no_grad():
        expect_close(logits_of(model, idx), reference(idx)[0], f"logits of your "
                     f"{what}", atol=ATOL, rtol=RTOL)


@node.check("gpt2_parameter_count", uses=["GPT"], section="The GPT",
            hint="tie the head to tok_emb, d_ff = 4 * d_model, biases in every "
                 "Linear and LayerNorm, one fused qkv Linear")
def gpt2_parameter_count(impl_gpt: Any) -> None:
    expect_same_count(impl_gpt, GPT2, "GPT (GPT-2 recipe)")


@node.check("gpt2_matches_reference", uses=["GPT"], section="The GPT",
            hint="token + position embeddings, the blocks, a final norm, then "
                 "logits = x @ tok_emb.weight^T")
def gpt2_matches_reference(impl_gpt: Any) -> None:
    expect_gpt_matches(impl_gpt, GPT2, "GPT (GPT-2 recipe)")


@node.check("causal", uses=["GPT"], section="The GPT",
            hint="every block's attention must be causal: logits at position t "
                 "may depend only on tokens 0 .. t")
def causal(impl_gpt: Any) -> None:
    model = build(impl_gpt, GPT2)
    idx = tokens(1, 10)
    changed = idx.clone()
    changed[0, 5] = (idx[0, 5] + 1) % 64
    with torch.no_grad():
        delta = (logits_of(model, changed) - logits_of(model, idx)).abs()
    per_position = delta.amax(dim=(0, 2))  # (T,)
    for t in range(5):
        if not per_position[t] <= 1e-5:
            fail(f"logits at position {t} changed when token 5 changed "
                 f"(max |Δ| = {per_position[t]:.2g})")


@node.check("full_context_and_single_token", uses=["GPT"], section="The GPT",
            hint="any length 1 .. context_length must work")
def full_context_and_single_token(impl_gpt: Any) -> None:
    model = build(impl_gpt, GPT2)
    for B, T in ((2, GPT2["context_length"]), (1, 1)):
        with torch.no_grad():
            logits = logits_of(model, tokens(B, T))
        if tuple(logits.shape) != (B, T, 64):
            fail(f"logits for idx ({B}, {T}) have shape {tuple(logits.shape)}, "
                 f"expected ({B}, {T}, 64)")
        if not logits.isfinite().all():
            fail(f"logits for idx ({B}, {T}) are not all finite")


@node.check("initial_loss_near_log_vocab", uses=["GPT"], section="Initialisation",
            hint="initialise Linear and Embedding weights N(0, 0.02) and biases 0, "
                 "as GPT-2: at step 0 every token should be about equally likely")
def initial_loss_near_log_vocab(impl_gpt: Any) -> None:
    model = build(impl_gpt, GPT2)
    idx, targets = tokens(4, 16, seed=1), tokens(4, 16, seed=2)
    with torch.no_grad():
        logits = logits_of(model, idx)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
    if not abs(loss - math.log(64)) <= 0.1:
        fail(f"cross-entropy at initialisation is {loss:.3f}, expected "
             f"ln V = {math.log(64):.3f} ± 0.1")


@node.check("llama_parameter_count", uses=["GPT"], optional=True,
            section="The Llama-style recipe",
            hint="no biases, RMSNorm has only a weight, SwiGLU has three matrices "
                 "(d_ff from the config), n_kv_head key/value heads, an untied head")
def llama_parameter_count(impl_gpt: Any) -> None:
    expect_same_count(impl_gpt, LLAMA, "GPT (Llama-style recipe)")


@node.check("llama_matches_reference", uses=["GPT"], optional=True,
            section="The Llama-style recipe",
            hint="rotate q and k with RoPE inside attention (not the values), "
                 "RMSNorm, SwiGLU, GQA, logits from lm_head")
def llama_matches_reference(impl_gpt: Any) -> None:
    expect_gpt_matches(impl_gpt, LLAMA, "GPT (Llama-style recipe)")


def block_mistakes(block: ReferenceBlock, x: torch.Tensor) -> list[Suspect]:
    """Outputs of a post-norm block and of a block with the exact (erf) GELU."""
    h = block.norm1(x + block.attn(x, None))
    post_norm = block.norm2(h + block.mlp(h))
    suspects = [Suspect(post_norm, "a post-norm block: norm(x + attn(x))",
                        "pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x))")]
    if isinstance(block.mlp, MLP):
        y = x + block.attn(block.norm1(x), None)
        exact_gelu = y + block.mlp.down(F.gelu(block.mlp.up(block.norm2(y))))
        suspects.append(Suspect(exact_gelu, "GELU without the tanh approximation",
                                "use F.gelu(x, approximate='tanh'), GPT-2's GELU"))
    return suspects


def expect_block_matches(impl_block: Any, config: dict, what: str) -> None:
    reference = build(ReferenceBlock, config, seed=1)
    block = build(impl_block, config)
    load_reference_weights(block, reference, what)
    x = randn(2, 8, config["d_model"], seed=3)
    with torch.no_grad():
        expect_close(block(x.clone()), reference(x), f"output of your {what}",
                     atol=ATOL, rtol=RTOL, suspects=block_mistakes(reference, x))


@node.check("block_matches_reference", uses=["Block"], section="The block",
            hint="pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x))")
def block_matches_reference(impl_block: Any) -> None:
    expect_block_matches(impl_block, GPT2, "Block (GPT-2 recipe)")


@node.check("block_causal", uses=["Block"], section="The block",
            hint="the block's attention must be causal")
def block_causal(impl_block: Any) -> None:
    block = build(impl_block, GPT2)
    x = randn(1, 10, 32, seed=4)
    changed = x.clone()
    changed[0, 6] += 1.0
    with torch.no_grad():
        delta = (as_tensor(block(changed), "y") - as_tensor(block(x), "y")).abs()
    per_position = delta.amax(dim=(0, 2))  # (T,)
    for t in range(6):
        if not per_position[t] <= 1e-5:
            fail(f"output at position {t} changed when position 6 changed "
                 f"(max |Δ| = {per_position[t]:.2g})")


@node.check("block_llama_matches_reference", uses=["Block"], optional=True,
            section="The Llama-style recipe",
            hint="RMSNorm (x / sqrt(mean(x^2) + eps) * weight), SwiGLU "
                 "down(silu(gate(x)) * up(x)), GQA, no biases")
def block_llama_matches_reference(impl_block: Any) -> None:
    expect_block_matches(impl_block, LLAMA_BLOCK, "Block (Llama-style recipe)")
