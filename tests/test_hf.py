"""Parity of llm_reference.hf conversions against HF transformers (random weights)."""

import pytest
import torch

from llm_reference.errors import UserError
from llm_reference.hf import (
    config_from_hf,
    from_hf,
    from_hf_state_dict,
    hf_config,
    to_hf,
    to_hf_state_dict,
)
from llm_reference.model import ModelConfig

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=101, context_length=24, n_layer=2, n_head=4, d_model=32)
SCALING = {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
           "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
CONFIGS = {
    "gpt2-tied": dict(TINY),
    "gpt2-untied": dict(TINY, tie_weights=False, d_ff=48, norm_eps=1e-6),
    "llama-gqa-untied": dict(TINY, position="rope", norm="rmsnorm", mlp="swiglu",
                             n_kv_head=2, bias=False, tie_weights=False),
    "llama-mqa-tied-bias": dict(TINY, position="rope", norm="rmsnorm", mlp="swiglu",
                                n_kv_head=1, bias=True, rope_theta=500.0),
    # Llama 3.1's RoPE scaling, sized so that a 24-token context sees all three
    # bands: head_dim 8 gives wavelengths 6.3 (blended), 63, 628, 6283 (slowed)
    "llama3.1-rope-scaling": dict(
        TINY, position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False,
        tie_weights=False, rope_scaling=SCALING),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_ours_to_hf_same_logits(random_model, name):
    ours = random_model(CONFIGS[name])
    hf = to_hf(ours).eval()
    idx = torch.randint(0, 101, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
def test_hf_to_ours_same_logits(name):
    cls = (transformers.GPT2LMHeadModel if name.startswith("gpt2")
           else transformers.LlamaForCausalLM)
    torch.manual_seed(1)
    hf = cls(hf_config(ModelConfig(**CONFIGS[name]))).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.2 if p.dim() > 1 else 1.0)
    ours = from_hf(hf)
    assert ours.config.to_dict() == ModelConfig(**CONFIGS[name]).to_dict()
    assert not ours.training
    idx = torch.randint(0, 101, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
def test_state_dict_round_trip_is_exact(random_model, name):
    ours = random_model(CONFIGS[name])
    sd = ours.state_dict()
    back = from_hf_state_dict(to_hf_state_dict(sd, ours.config), ours.config)
    assert back.keys() == sd.keys()
    for key, t in sd.items():
        assert torch.equal(back[key], t), key


@pytest.mark.parametrize("name", CONFIGS)
def test_config_round_trip(name):
    config = ModelConfig(**CONFIGS[name])
    assert config_from_hf(hf_config(config)).to_dict() == config.to_dict()


def test_gpt2_conv1d_weights_are_transposed(random_model):
    ours = random_model(CONFIGS["gpt2-tied"])
    hf_sd = to_hf_state_dict(ours.state_dict(), ours.config)
    qkv = ours.blocks[0].attn.qkv.weight  # (3C, C), nn.Linear is (out, in)
    assert torch.equal(hf_sd["transformer.h.0.attn.c_attn.weight"], qkv.t())
    assert torch.equal(hf_sd["lm_head.weight"], ours.tok_emb.weight)


def test_hf_greedy_generate_matches_ours(random_model):
    ours = random_model(CONFIGS["llama-gqa-untied"])
    hf = to_hf(ours).eval()
    prompt = torch.tensor([[5, 17, 42]])
    out = hf.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=True,
                      pad_token_id=0)
    idx = prompt
    with torch.no_grad():
        for _ in range(10):
            next_id = ours(idx)[0][:, -1].argmax(-1, keepdim=True)
            idx = torch.cat([idx, next_id], dim=1)
    assert out.tolist() == idx.tolist()


@pytest.mark.parametrize("cfg, message", [
    (dict(TINY, position="rope"), "matches no HF family"),
    (dict(TINY, n_kv_head=2), "n_kv_head = n_head"),
    (dict(TINY, bias=False), "bias = true"),
])
def test_configs_without_an_hf_family_are_user_errors(cfg, message):
    with pytest.raises(UserError, match=message):
        hf_config(ModelConfig(**cfg))


def test_unsupported_hf_configs_are_user_errors():
    with pytest.raises(UserError, match="model_type = 'bert'"):
        config_from_hf(transformers.BertConfig())
    with pytest.raises(UserError, match="activation_function"):
        config_from_hf(transformers.GPT2Config(activation_function="relu"))
    scaled = transformers.LlamaConfig(
        hidden_size=32, num_attention_heads=4, rope_parameters={
            "rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    with pytest.raises(UserError, match="rope_type = 'linear'"):
        config_from_hf(scaled)


def test_llama3_scaling_keeps_fast_pairs_slows_slow_ones_and_blends_between():
    from llm_reference.model import llama3_inv_freq, rope_tables

    inv = torch.tensor([1.0, 0.1, 0.01, 4.0])  # wavelengths 6.3, 63, 628, 1.6
    scaled = llama3_inv_freq(inv, SCALING)  # short < 8 / 4 = 2 <= blend <= 8 < long
    torch.testing.assert_close(scaled[1:3], inv[1:3] / 4.0)
    assert scaled[3] == inv[3] and inv[0] / 4.0 < scaled[0] < inv[0]
    cos, _ = rope_tables(8, 24, scaling=SCALING)
    assert not torch.equal(cos, rope_tables(8, 24)[0])


@pytest.mark.parametrize("scaling, message", [
    ({"rope_type": "yarn"}, "rope_type"),
    ({**SCALING, "factor": 0}, "factor must be a positive number"),
    ({k: v for k, v in SCALING.items() if k != "factor"}, "needs exactly"),
    ({**SCALING, "high_freq_factor": 0.5}, "must exceed"),
])
def test_bad_rope_scaling_is_a_user_error(scaling, message):
    with pytest.raises(UserError, match=message):
        ModelConfig(**CONFIGS["llama3.1-rope-scaling"] | {"rope_scaling": scaling})
    with pytest.raises(UserError, match="needs position = 'rope'"):
        ModelConfig(**TINY, rope_scaling=SCALING)


def test_rope_scaling_is_in_the_config_file_only_when_set():
    from llm_reference.config import to_toml

    assert "rope_scaling" not in ModelConfig(**TINY).to_dict()
    config = ModelConfig(**CONFIGS["llama3.1-rope-scaling"])
    text = to_toml({"model": config.to_dict()})
    import tomllib

    assert ModelConfig.from_dict(tomllib.loads(text)["model"]).to_dict() == (
        config.to_dict())
