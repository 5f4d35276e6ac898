"""Tests for llm_reference.model: config validation, recipes, attention paths, KV cache,
parameter and FLOP counts, initialization."""

import math

import pytest
import torch
import torch.nn.functional as F

from llm_reference.errors import UserError
from llm_reference.model import (
    GPT,
    KVCache,
    ModelConfig,
    RMSNorm,
    apply_rope,
    causal_mask,
    rope_tables,
)

TINY = dict(vocab_size=97, context_length=32, n_layer=2, n_head=4, d_model=32)
GPT2_RECIPE = dict(TINY)
LLAMA_RECIPE = dict(TINY, position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2,
                    bias=False, tie_weights=False)
RECIPES = {
    "gpt2": GPT2_RECIPE,
    "llama-gqa": LLAMA_RECIPE,
    "llama-mqa-tied-bias": dict(LLAMA_RECIPE, n_kv_head=1, bias=True, tie_weights=True),
    "mixed": dict(TINY, position="rope", norm="layernorm", mlp="swiglu", bias=False),
}


def make(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**kw))


def randomize_norms_and_biases(model: GPT) -> None:
    """Init leaves norms at 1/0 and biases at 0; make them matter in comparisons."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(0.0, 0.5)


# ------------------------------------------------------------------------- config


def test_defaults_match_the_contract():
    c = ModelConfig()
    assert (c.vocab_size, c.context_length, c.n_layer, c.n_head, c.d_model) == (
        8192, 256, 4, 4, 256)
    assert c.n_kv_head is None and c.kv_heads == 4 and c.d_ff is None
    assert (c.position, c.norm, c.mlp, c.attention) == ("learned", "layernorm",
                                                         "gelu", "sdpa")
    assert c.bias and c.tie_weights and c.dropout == 0.0
    assert c.ff_dim == 1024
    assert ModelConfig(mlp="swiglu").ff_dim == 704  # 8/3 * 256 = 682.7 -> 704
    assert ModelConfig(mlp="swiglu", d_model=768, n_head=12).ff_dim == 2048


def test_to_dict_resolves_defaults_and_round_trips():
    c = ModelConfig(**LLAMA_RECIPE)
    d = c.to_dict()
    assert d["n_kv_head"] == 2 and d["d_ff"] == c.ff_dim
    assert None not in d.values()  # TOML has no null
    assert ModelConfig.from_dict(d).to_dict() == d


def test_from_dict_coerces_integral_floats():
    c = ModelConfig.from_dict({"rope_theta": 500000, "norm_eps": 1, "dropout": 0})
    assert isinstance(c.rope_theta, float) and c.rope_theta == 500000.0


@pytest.mark.parametrize("field, value", [
    ("n_head", 3),  # does not divide d_model
    ("n_kv_head", 3),  # does not divide n_head
    ("n_kv_head", 8),  # more kv heads than heads
    ("d_model", 0), ("vocab_size", -1), ("n_layer", 2.5), ("context_length", "256"),
    ("n_layer", True), ("d_ff", 0),
    ("position", "alibi"), ("norm", "batchnorm"), ("mlp", "relu"),
    ("attention", "flash"), ("bias", 1), ("tie_weights", "yes"),
    ("dropout", 1.0), ("dropout", -0.1), ("norm_eps", 0.0), ("rope_theta", -1.0),
    ("rope_theta", "big"),
])
def test_invalid_values_name_field_and_value(field, value):
    with pytest.raises(UserError) as e:
        ModelConfig.from_dict({field: value})
    assert f"model.{field}" in str(e.value) and repr(value) in str(e.value)


def test_rope_needs_even_head_dim():
    with pytest.raises(UserError, match="even head_dim"):
        ModelConfig(d_model=12, n_head=4, position="rope")
    ModelConfig(d_model=12, n_head=4, position="learned")  # fine without RoPE


def test_unknown_field_is_a_user_error():
    with pytest.raises(UserError, match="model.n_heads: unknown field"):
        ModelConfig.from_dict({"n_heads": 4})


# ------------------------------------------------------------------------ forward


@pytest.mark.parametrize("recipe", RECIPES)
def test_forward_shapes_and_initial_loss(recipe):
    model = make(**RECIPES[recipe])
    idx = torch.randint(0, 97, (3, 20))
    logits, loss = model(idx)
    assert logits.shape == (3, 20, 97) and loss is None
    _, loss = model(idx, targets=torch.randint(0, 97, (3, 20)))
    # a fresh model predicts nearly uniformly: loss ~ ln(V)
    assert abs(loss.item() - math.log(97)) < 0.3


def test_loss_is_cross_entropy_and_ignores_minus_100():
    model = make(**TINY)
    idx = torch.randint(0, 97, (2, 10))
    targets = torch.randint(0, 97, (2, 10))
    targets[:, :4] = -100
    logits, loss = model(idx, targets)
    assert logits is None  # training needs the loss only (see cross_entropy.py)
    logits, _ = model(idx)
    expected = F.cross_entropy(logits[:, 4:].reshape(-1, 97),
                               targets[:, 4:].reshape(-1))
    torch.testing.assert_close(loss, expected)


def test_sequence_longer_than_context_is_a_user_error():
    model = make(**TINY)
    with pytest.raises(UserError, match="context_length = 32"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_tied_head_shares_the_embedding_matrix():
    tied, untied = make(**TINY), make(**dict(TINY, tie_weights=False))
    assert tied.lm_head is None and untied.lm_head is not None
    assert "lm_head.weight" not in tied.state_dict()
    assert tied.num_parameters() == untied.num_parameters() - 97 * 32
    idx = torch.randint(0, 97, (1, 5))
    tied(idx, idx)[1].backward()
    assert tied.tok_emb.weight.grad is not None


def test_dropout_only_in_training_mode():
    model = make(**dict(TINY, dropout=0.5))
    idx = torch.randint(0, 97, (2, 8))
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


def test_same_seed_same_weights():
    a, b = make(**LLAMA_RECIPE), make(**LLAMA_RECIPE)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_learns_a_fixed_batch():
    model = make(**LLAMA_RECIPE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    idx = torch.randint(0, 97, (4, 16))
    first = None
    for _ in range(30):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


# ---------------------------------------------------------------------- attention


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])  # MHA, GQA, MQA
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_explicit_attention_matches_sdpa_outputs_and_grads(n_kv_head, position):
    cfg = dict(TINY, n_kv_head=n_kv_head, position=position)
    sdpa = make(**cfg, attention="sdpa")
    explicit = make(**cfg, attention="explicit")
    randomize_norms_and_biases(sdpa)
    explicit.load_state_dict(sdpa.state_dict())
    idx = torch.randint(0, 97, (2, 24))
    logits_a, loss_a = sdpa(idx, idx)
    logits_b, loss_b = explicit(idx, idx)
    torch.testing.assert_close(logits_a, logits_b, atol=1e-5, rtol=1e-5)
    loss_a.backward()
    loss_b.backward()
    grads_b = dict(explicit.named_parameters())
    for name, p in sdpa.named_parameters():
        torch.testing.assert_close(p.grad, grads_b[name].grad, atol=1e-6, rtol=1e-4)


def test_attention_is_causal():
    """Changing a later token never changes the logits at earlier positions."""
    for recipe in RECIPES.values():
        model = make(**recipe)
        idx = torch.randint(0, 97, (1, 12))
        changed = idx.clone()
        changed[0, 7] = (idx[0, 7] + 1) % 97
        a, b = model(idx)[0], model(changed)[0]
        torch.testing.assert_close(a[:, :7], b[:, :7])
        assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_causal_mask_with_offset():
    assert causal_mask(2, 4).tolist() == [[True, True, True, False],
                                          [True, True, True, True]]
    assert torch.equal(causal_mask(3, 3), torch.ones(3, 3, dtype=torch.bool).tril())


# ------------------------------------------------------------------------ KV cache


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_kv_cache_chunks_match_full_forward(recipe, attention):
    model = make(**RECIPES[recipe], attention=attention).eval()
    randomize_norms_and_biases(model)
    idx = torch.randint(0, 97, (2, 32))
    full, _ = model(idx)
    cache = KVCache(model.config, batch_size=2)
    pieces = []
    # a multi-token prefill, a multi-token chunk after it, then one token at a time
    for start, end in [(0, 9), (9, 14)] + [(t, t + 1) for t in range(14, 32)]:
        logits, _ = model(idx[:, start:end], kv_cache=cache)
        pieces.append(logits)
        assert cache.pos == end
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_layout_and_overflow():
    cfg = ModelConfig(**LLAMA_RECIPE)
    cache = KVCache(cfg, batch_size=3)
    assert len(cache.k) == cfg.n_layer
    assert cache.k[0].shape == (3, 2, 32, 8)  # (B, n_kv_head, max_len, head_dim)
    model = make(**LLAMA_RECIPE)
    cache = KVCache(model.config)
    model(torch.zeros(1, 30, dtype=torch.long), kv_cache=cache)
    with pytest.raises(UserError, match="33 tokens"):
        model(torch.zeros(1, 3, dtype=torch.long), kv_cache=cache)
    cache.reset()
    assert cache.pos == 0


# ----------------------------------------------------------------- norms and RoPE


def test_rmsnorm_matches_torch():
    x = torch.randn(4, 7, 32)
    ours = RMSNorm(32, eps=1e-5)
    ref = torch.nn.RMSNorm(32, eps=1e-5)
    with torch.no_grad():
        ours.weight.normal_()
        ref.weight.copy_(ours.weight)
    torch.testing.assert_close(ours(x), ref(x))


def test_rope_scores_depend_only_on_distance():
    cos, sin = rope_tables(16, 64)
    q, k = torch.randn(16), torch.randn(16)

    def score(i, j):
        qi = apply_rope(q.expand(64, 16), cos, sin)[i]
        kj = apply_rope(k.expand(64, 16), cos, sin)[j]
        return qi @ kj

    torch.testing.assert_close(score(5, 2), score(40, 37), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(score(3, 3), q @ k, atol=1e-5, rtol=1e-5)  # no turn


def test_rope_preserves_norm():
    cos, sin = rope_tables(8, 10)
    x = torch.randn(2, 3, 10, 8)
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))


# ------------------------------------------------------------- counts and init


def test_parameter_counts_by_hand():
    V, T, C, L, F_ = 97, 32, 32, 2, 128
    per_layer = (2 * 2 * C  # two LayerNorms (weight + bias)
                 + C * 3 * C + 3 * C  # qkv
                 + C * C + C  # proj
                 + C * F_ + F_ + F_ * C + C)  # MLP
    non_embedding = L * per_layer + 2 * C  # + final norm
    model = make(**TINY)
    assert model.num_parameters(non_embedding=True) == non_embedding
    assert model.num_parameters() == non_embedding + V * C + T * C  # tied head
    assert model.flops_per_token() == 6 * (non_embedding + V * C) + 12 * L * C * T
    untied = make(**dict(TINY, tie_weights=False))
    assert untied.num_parameters(non_embedding=True) == non_embedding
    assert untied.flops_per_token() == model.flops_per_token()


def test_gqa_shrinks_the_qkv_projection():
    mha = make(**dict(LLAMA_RECIPE, n_kv_head=4))
    gqa, mqa = make(**LLAMA_RECIPE), make(**dict(LLAMA_RECIPE, n_kv_head=1))
    assert mha.blocks[0].attn.qkv.weight.shape == (32 + 2 * 32, 32)
    assert gqa.blocks[0].attn.qkv.weight.shape == (32 + 2 * 16, 32)
    assert mqa.blocks[0].attn.qkv.weight.shape == (32 + 2 * 8, 32)


def test_scaled_residual_init():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=512, n_layer=8, n_head=4, d_model=256))
    residual = 0.02 / math.sqrt(2 * 8)
    for block in model.blocks:
        assert abs(block.attn.proj.weight.std().item() - residual) < 0.1 * residual
        assert abs(block.mlp.down.weight.std().item() - residual) < 0.1 * residual
        assert abs(block.attn.qkv.weight.std().item() - 0.02) < 0.002
        assert torch.count_nonzero(block.attn.qkv.bias) == 0
    assert abs(model.tok_emb.weight.std().item() - 0.02) < 0.002
