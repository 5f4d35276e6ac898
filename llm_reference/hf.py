"""Convert weights between our GPT and HF `transformers` (GPT-2, Llama, Qwen).

Our model and these HF families compute the same function; only the names and a
few layouts differ:

- GPT-2 (`GPT2LMHeadModel`): learned positions, LayerNorm, GELU with the tanh
  approximation ("gelu_new"), MHA, biases, tied head. Its linear layers are `Conv1D`
  modules that store weights as (in, out), the transpose of `nn.Linear`'s (out, in).
  q, k and v are fused in `c_attn` in the same order as our `qkv`.
- Llama (`LlamaForCausalLM`): RoPE, RMSNorm, SwiGLU, GQA, no biases, head tied or
  not. q, k and v are three separate projections; we split or fuse our `qkv`. Our
  RoPE uses HF's "rotate half" layout, so no permutation of q or k is needed.
  Mistral is Llama with a sliding attention window, which equals plain causal
  attention up to the window's length, so we read it as Llama with that context.
- Qwen2: Llama with biases on q, k and v only (our `qkv_bias`). Qwen3: Llama with
  an RMSNorm on each query and key head before RoPE (`qk_norm`) and heads wider
  than d_model / n_head (`d_head`).
- Mixtral and Qwen3-MoE: Llama (Qwen3) attention with a mixture of experts in
  every layer (our `moe_*` fields, moe.py): a router `gate` and SwiGLU experts,
  softmax top-k routing (Mixtral renormalises the k gates, Qwen3-MoE when
  `norm_topk_prob`). Their checkpoints store one tensor per expert
  (`experts.{e}.w1` = gate, `w3` = up, `w2` = down in Mixtral); `transformers` v5
  holds the experts of a layer as two 3D tensors instead (`gate_up_proj` (E, 2F,
  C), `down_proj` (E, C, F)). Our state-dict conversions speak the checkpoint's
  names; `to_hf` and `from_hf` fuse and split for the in-memory model.

`transformers` is only needed here (it is a dev dependency), so it is imported
inside the functions that build HF objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .errors import UserError
from .model import GPT, ModelConfig

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

StateDict = dict[str, torch.Tensor]


FAMILIES = ("gpt2", "llama", "mistral", "qwen2", "qwen3",  # HF model_type we read
            "mixtral", "qwen3_moe")
MOE_FAMILIES = ("mixtral", "qwen3_moe")


def family(config: ModelConfig) -> str:
    """The HF family that can hold a model of this config: "gpt2", "llama", "qwen2"
    (biases on q, k, v only) or "qwen3" (q/k norm); a UserError naming the field
    that rules each out when none can."""
    recipe = (config.position, config.norm, config.mlp)
    if config.is_moe:
        return _moe_family(config)
    if recipe == ("learned", "layernorm", "gelu"):
        if config.kv_heads != config.n_head or not config.bias or not (
                config.has_qkv_bias) or config.qk_norm or (
                config.head_dim * config.n_head != config.d_model):
            raise UserError("model: HF GPT-2 needs n_kv_head = n_head, bias = true, "
                            "qkv_bias = true, qk_norm = false and d_head = d_model / "
                            f"n_head; got n_kv_head = {config.kv_heads}, bias = "
                            f"{config.bias}, qkv_bias = {config.has_qkv_bias}, "
                            f"qk_norm = {config.qk_norm}, d_head = {config.head_dim}")
        return "gpt2"
    if recipe == ("rope", "rmsnorm", "swiglu"):
        if config.qk_norm:
            if config.bias or config.has_qkv_bias:
                raise UserError("model: qk_norm = true (HF Qwen3) needs bias = false "
                                "and qkv_bias = false")
            return "qwen3"
        if config.has_qkv_bias and not config.bias:
            return "qwen2"
        if config.has_qkv_bias != config.bias:
            raise UserError("model: qkv_bias = false with bias = true matches no HF "
                            "family; set qkv_bias = true (Llama) or bias = false")
        return "llama"
    raise UserError(
        f"model: position={config.position!r}, norm={config.norm!r}, "
        f"mlp={config.mlp!r} matches no HF family; use learned/layernorm/gelu "
        "(GPT-2) or rope/rmsnorm/swiglu (Llama, Qwen2, Qwen3)")


def hf_config(config: ModelConfig) -> PretrainedConfig:
    """The HF config (`GPT2Config`, `LlamaConfig`, `Qwen2Config` or `Qwen3Config`)
    describing the same network."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config, Qwen3Config

    name = family(config)
    if name == "gpt2":
        return GPT2Config(
            vocab_size=config.vocab_size, n_positions=config.context_length,
            n_embd=config.d_model, n_layer=config.n_layer, n_head=config.n_head,
            n_inner=config.ff_dim, activation_function="gelu_new",
            resid_pdrop=config.dropout, embd_pdrop=config.dropout,
            attn_pdrop=config.dropout, layer_norm_epsilon=config.norm_eps,
            tie_word_embeddings=config.tie_weights,
            bos_token_id=None, eos_token_id=None)
    common = dict(
        vocab_size=config.vocab_size, max_position_embeddings=config.context_length,
        hidden_size=config.d_model, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, num_key_value_heads=config.kv_heads,
        head_dim=config.head_dim, intermediate_size=config.ff_dim, hidden_act="silu",
        rms_norm_eps=config.norm_eps, attention_dropout=config.dropout,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta,
                         **(config.rope_scaling or {})},
        tie_word_embeddings=config.tie_weights,
        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    if name in MOE_FAMILIES:
        return _moe_hf_config(name, config, common)
    if name == "llama":
        return LlamaConfig(**common, attention_bias=config.bias, mlp_bias=config.bias)
    if name == "qwen2":
        return Qwen2Config(**common, use_sliding_window=False)
    return Qwen3Config(**common, attention_bias=False, use_sliding_window=False)


def config_from_hf(hf: PretrainedConfig) -> ModelConfig:
    """Our ModelConfig for an HF config of a supported family; others: UserError."""
    if hf.model_type == "gpt2":
        if hf.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise UserError(f"HF config: activation_function = "
                            f"{hf.activation_function!r}; only tanh GELU is supported")
        return ModelConfig(
            vocab_size=hf.vocab_size, context_length=hf.n_positions,
            n_layer=hf.n_layer, n_head=hf.n_head, d_model=hf.n_embd,
            d_ff=hf.n_inner or 4 * hf.n_embd, norm_eps=hf.layer_norm_epsilon,
            tie_weights=hf.tie_word_embeddings)
    if hf.model_type not in FAMILIES:
        raise UserError(f"HF config: model_type = {hf.model_type!r}; supported: "
                        f"{', '.join(map(repr, FAMILIES))}")
    rope = hf.rope_parameters or {}
    scaling = _rope_scaling_from_hf(rope)
    if hf.hidden_act != "silu":
        raise UserError(f"HF config: hidden_act = {hf.hidden_act!r}; only 'silu' "
                        "(SwiGLU) is supported")
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    bias = qkv_bias = bool(getattr(hf, "attention_bias", False))
    if hf.model_type == "llama" and hf.mlp_bias != bias:
        raise UserError("HF config: needs attention_bias = mlp_bias")
    if hf.model_type == "qwen2":  # biases on q, k and v, none elsewhere
        bias, qkv_bias = False, True
    return ModelConfig(
        vocab_size=hf.vocab_size, n_layer=hf.num_hidden_layers,
        context_length=_attention_span(hf), n_head=hf.num_attention_heads,
        n_kv_head=hf.num_key_value_heads, d_model=hf.hidden_size,
        d_ff=getattr(hf, "moe_intermediate_size", hf.intermediate_size),
        d_head=None if head_dim * hf.num_attention_heads == hf.hidden_size
        else head_dim,
        position="rope", rope_theta=rope.get("rope_theta", 10000.0),
        rope_scaling=scaling, norm="rmsnorm",
        norm_eps=hf.rms_norm_eps, mlp="swiglu", bias=bias,
        qkv_bias=None if qkv_bias == bias else qkv_bias,
        qk_norm=hf.model_type in ("qwen3", "qwen3_moe"),
        tie_weights=hf.tie_word_embeddings, **_moe_fields(hf))


def _rope_scaling_from_hf(rope: dict) -> dict | None:
    """Our rope_scaling from HF's rope_parameters: None for plain RoPE, Llama 3's
    four numbers for rope_type "llama3"; other scalings are a UserError."""
    kind = rope.get("rope_type", "default")
    if kind == "default":
        return None
    if kind != "llama3":
        raise UserError(f"HF config: rope_type = {kind!r}; supported: 'default' "
                        "and 'llama3' (Llama 3.1+)")
    keys = ("factor", "low_freq_factor", "high_freq_factor",
            "original_max_position_embeddings")
    missing = [k for k in keys if k not in rope]
    if missing:
        raise UserError(f"HF config: rope_type 'llama3' needs {missing[0]}")
    return {"rope_type": "llama3", **{k: rope[k] for k in keys}}


def _attention_span(hf: PretrainedConfig) -> int:
    """The context we can serve exactly: max_position_embeddings, or the sliding
    window when one is used, since within the window sliding-window attention is
    plain causal attention (Mistral's `sliding_window`, Qwen's
    `use_sliding_window`)."""
    window = getattr(hf, "sliding_window", None)
    if hf.model_type in ("qwen2", "qwen3", "qwen3_moe") and not getattr(
            hf, "use_sliding_window", False):
        window = None
    return min(hf.max_position_embeddings, window or hf.max_position_embeddings)


# ------------------------------------------------------------- mixtures of experts


def _moe_family(config: ModelConfig) -> str:
    """"mixtral" or "qwen3_moe" (q/k norm) for a mixture of experts; a UserError
    naming what rules both out."""
    if (config.position, config.norm, config.mlp) != ("rope", "rmsnorm", "swiglu") or (
            config.bias or config.has_qkv_bias):
        raise UserError("model: HF Mixtral and Qwen3-MoE need position = 'rope', norm "
                        "= 'rmsnorm', mlp = 'swiglu', bias = false, qkv_bias = false")
    if config.moe_shared or config.moe_gate != "softmax" or config.moe_bias_rate:
        raise UserError("model: HF Mixtral and Qwen3-MoE need moe_shared = 0, "
                        "moe_gate = 'softmax' and moe_bias_rate = 0; got "
                        f"{config.moe_shared}, {config.moe_gate!r}, "
                        f"{config.moe_bias_rate}")
    if config.qk_norm:
        return "qwen3_moe"
    if not config.moe_renorm:
        raise UserError("model: moe_renorm = false needs qk_norm = true (HF "
                        "Qwen3-MoE); HF Mixtral always renormalises the gates")
    return "mixtral"


def _moe_hf_config(name: str, config: ModelConfig, common: dict
                   ) -> PretrainedConfig:
    """MixtralConfig or Qwen3MoeConfig. HF's balancing loss is moe_top_k times
    ours (it sums the fractions of each of the k slots), hence the division."""
    from transformers import MixtralConfig, Qwen3MoeConfig

    moe = dict(num_experts_per_tok=config.moe_top_k,
               router_aux_loss_coef=config.moe_aux_coef / config.moe_top_k)
    if name == "mixtral":
        return MixtralConfig(**common, **moe, num_local_experts=config.moe_experts)
    return Qwen3MoeConfig(**common, **moe, num_experts=config.moe_experts,
                          moe_intermediate_size=config.ff_dim,
                          norm_topk_prob=config.moe_renorm, decoder_sparse_step=1,
                          mlp_only_layers=[], attention_bias=False,
                          use_sliding_window=False)


def _moe_fields(hf: PretrainedConfig) -> dict:
    """The moe_* fields of an HF MoE config ({} for a dense family); the experts'
    width is d_ff (Qwen3-MoE's moe_intermediate_size)."""
    if hf.model_type not in MOE_FAMILIES:
        return {}
    if hf.model_type == "qwen3_moe" and (hf.mlp_only_layers
                                         or hf.decoder_sparse_step != 1):
        raise UserError("HF config: mlp_only_layers / decoder_sparse_step mix dense "
                        "and MoE layers; only models with experts in every layer "
                        "are supported")
    experts = getattr(hf, "num_local_experts", None) or hf.num_experts
    return dict(moe_experts=experts, moe_top_k=hf.num_experts_per_tok,
                moe_renorm=hf.model_type == "mixtral" or bool(hf.norm_topk_prob),
                moe_aux_coef=hf.router_aux_loss_coef * hf.num_experts_per_tok)


def _expert_names(config: ModelConfig, layer: int) -> list[tuple[str, str]]:
    """(our name, checkpoint name) of one layer's router and experts."""
    ours = f"blocks.{layer}.mlp."
    if family(config) == "mixtral":
        theirs = f"model.layers.{layer}.block_sparse_moe."
        parts = (("gate", "w1"), ("up", "w3"), ("down", "w2"))
    else:
        theirs = f"model.layers.{layer}.mlp."
        parts = (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj"))
    names = [(ours + "router.weight", theirs + "gate.weight")]
    for e in range(config.moe_experts):
        names += [(ours + f"experts.{e}.{a}.weight", theirs + f"experts.{e}.{b}.weight")
                  for a, b in parts]
    return names


def _fuse_experts(sd: StateDict, config: ModelConfig) -> StateDict:
    """Checkpoint names -> transformers v5's in-memory MoE: per layer
    `mlp.experts.gate_up_proj` (E, 2F, C) and `mlp.experts.down_proj` (E, C, F)."""
    out = dict(sd)
    for i in range(config.n_layer):
        names = dict((ours.split("mlp.")[1], theirs)
                     for ours, theirs in _expert_names(config, i))
        experts = range(config.moe_experts)
        mlp = f"model.layers.{i}.mlp."
        out[mlp + "gate.weight"] = out.pop(names["router.weight"])
        out[mlp + "experts.gate_up_proj"] = torch.stack([torch.cat(
            [out.pop(names[f"experts.{e}.gate.weight"]),
             out.pop(names[f"experts.{e}.up.weight"])]) for e in experts])
        out[mlp + "experts.down_proj"] = torch.stack(
            [out.pop(names[f"experts.{e}.down.weight"]) for e in experts])
    return out


def _split_experts(sd: StateDict, config: ModelConfig) -> StateDict:
    """The inverse of `_fuse_experts`: per-expert tensors under checkpoint names."""
    out = dict(sd)
    for i in range(config.n_layer):
        names = dict((ours.split("mlp.")[1], theirs)
                     for ours, theirs in _expert_names(config, i))
        mlp = f"model.layers.{i}.mlp."
        router = out.pop(mlp + "gate.weight")
        gate_up, down = (out.pop(mlp + "experts.gate_up_proj"),
                         out.pop(mlp + "experts.down_proj"))
        out[names["router.weight"]] = router
        for e in range(config.moe_experts):
            gate, up = gate_up[e].chunk(2)
            out[names[f"experts.{e}.gate.weight"]] = gate
            out[names[f"experts.{e}.up.weight"]] = up
            out[names[f"experts.{e}.down.weight"]] = down[e]
    return out


# ------------------------------------------------------------------- name tables


def _gpt2_names(config: ModelConfig) -> list[tuple[str, str, bool]]:
    """(our name, HF name, transposed?) for every GPT-2 tensor but the head."""
    names = [("tok_emb.weight", "transformer.wte.weight", False),
             ("pos_emb.weight", "transformer.wpe.weight", False),
             ("norm_f.weight", "transformer.ln_f.weight", False),
             ("norm_f.bias", "transformer.ln_f.bias", False)]
    pairs = [("norm1", "ln_1"), ("attn.qkv", "attn.c_attn"),
             ("attn.proj", "attn.c_proj"), ("norm2", "ln_2"), ("mlp.up", "mlp.c_fc"),
             ("mlp.down", "mlp.c_proj")]
    for i in range(config.n_layer):
        for ours, theirs in pairs:
            conv1d = not ours.startswith("norm")  # Conv1D weight is (in, out)
            names.append((f"blocks.{i}.{ours}.weight",
                          f"transformer.h.{i}.{theirs}.weight", conv1d))
            names.append((f"blocks.{i}.{ours}.bias", f"transformer.h.{i}.{theirs}.bias",
                          False))
    return names


def _llama_names(config: ModelConfig) -> list[tuple[str, str]]:
    """(our name, HF name) for every Llama (Qwen) tensor but the head and q/k/v."""
    names = [("tok_emb.weight", "model.embed_tokens.weight"),
             ("norm_f.weight", "model.norm.weight")]
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        names += [(ours + "norm1.weight", theirs + "input_layernorm.weight"),
                  (ours + "norm2.weight", theirs + "post_attention_layernorm.weight")]
        if config.qk_norm:
            names += [(ours + f"attn.{n}_norm.weight", theirs + f"self_attn.{n}_norm."
                       "weight") for n in "qk"]
        kinds = ["weight", "bias"] if config.bias else ["weight"]
        for kind in kinds:
            names += [(ours + f"attn.proj.{kind}", theirs + f"self_attn.o_proj.{kind}")]
            if not config.is_moe:
                names += [
                    (ours + f"mlp.gate.{kind}", theirs + f"mlp.gate_proj.{kind}"),
                    (ours + f"mlp.up.{kind}", theirs + f"mlp.up_proj.{kind}"),
                    (ours + f"mlp.down.{kind}", theirs + f"mlp.down_proj.{kind}")]
        if config.is_moe:
            names += _expert_names(config, i)
    return names


def _qkv_sizes(config: ModelConfig) -> list[int]:
    d = config.head_dim
    return [config.n_head * d, config.kv_heads * d, config.kv_heads * d]


def hf_names(config: ModelConfig) -> set[str]:
    """The names of every tensor of the HF model (the head included)."""
    if family(config) == "gpt2":
        names = {theirs for _, theirs, _ in _gpt2_names(config)}
    else:
        names = {theirs for _, theirs in _llama_names(config)}
        kinds = ["weight", "bias"] if config.has_qkv_bias else ["weight"]
        names |= {f"model.layers.{i}.self_attn.{n}_proj.{kind}"
                  for i in range(config.n_layer) for n in "qkv" for kind in kinds}
    return names | {"lm_head.weight"}


# ---------------------------------------------------------------- state dicts


def to_hf_state_dict(sd: StateDict, config: ModelConfig) -> StateDict:
    """Our state_dict -> the HF model's, with fresh contiguous tensors."""
    out: StateDict = {}
    if family(config) == "gpt2":
        for ours, theirs, transposed in _gpt2_names(config):
            out[theirs] = sd[ours].t() if transposed else sd[ours]
    else:
        for ours, theirs in _llama_names(config):
            out[theirs] = sd[ours]
        kinds = ["weight", "bias"] if config.has_qkv_bias else ["weight"]
        for i in range(config.n_layer):
            for kind in kinds:
                q, k, v = sd[f"blocks.{i}.attn.qkv.{kind}"].split(_qkv_sizes(config))
                for name, t in (("q", q), ("k", k), ("v", v)):
                    out[f"model.layers.{i}.self_attn.{name}_proj.{kind}"] = t
    out["lm_head.weight"] = sd["tok_emb.weight" if config.tie_weights else
                               "lm_head.weight"]
    return {name: t.detach().clone().contiguous() for name, t in out.items()}


def from_hf_state_dict(sd: StateDict, config: ModelConfig) -> StateDict:
    """An HF state_dict -> ours (for a config from `config_from_hf`)."""
    out: StateDict = {}
    if family(config) == "gpt2":
        for ours, theirs, transposed in _gpt2_names(config):
            out[ours] = sd[theirs].t() if transposed else sd[theirs]
    else:
        for ours, theirs in _llama_names(config):
            out[ours] = sd[theirs]
        kinds = ["weight", "bias"] if config.has_qkv_bias else ["weight"]
        for i in range(config.n_layer):
            for kind in kinds:
                attn = f"model.layers.{i}.self_attn."
                out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(
                    [sd[attn + f"{n}_proj.{kind}"] for n in "qkv"])
    if not config.tie_weights:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return {name: t.detach().clone().contiguous() for name, t in out.items()}


# --------------------------------------------------------------------- models


def to_hf(model: GPT) -> PreTrainedModel:
    """An HF `GPT2LMHeadModel`, `LlamaForCausalLM`, … with our model's weights."""
    from transformers import AutoModelForCausalLM

    config = model.config
    weight = next(model.parameters())
    hf = AutoModelForCausalLM.from_config(hf_config(config))
    hf = hf.to(device=weight.device, dtype=weight.dtype)
    sd = to_hf_state_dict(model.state_dict(), config)
    if config.is_moe:
        sd = _fuse_experts(sd, config)
    hf.load_state_dict(sd, strict=True)
    return hf.train(model.training)


def from_hf(hf: PreTrainedModel) -> GPT:
    """Our GPT with the weights of an HF model of a supported family."""
    config = config_from_hf(hf.config)
    weight = next(hf.parameters())
    model = GPT(config).to(device=weight.device, dtype=weight.dtype)
    sd = hf.state_dict()
    if config.is_moe:
        sd = _split_experts(sd, config)
    model.load_state_dict(from_hf_state_dict(sd, config), strict=True)
    return model.train(hf.training)
