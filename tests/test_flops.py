"""Parameter and FLOP counts (flops.py) against published figures and the real GPT."""

import tomllib

import pytest
import torch

from llm_reference import flops
from llm_reference.config import PRESETS_DIR, model_config
from llm_reference.model import GPT, ModelConfig
from llm_reference.plan import TRACKS, make_plan

GPT2_SMALL = ModelConfig(vocab_size=50257, context_length=1024, n_layer=12,
                         n_head=12, d_model=768)


def meta_gpt(config: ModelConfig) -> GPT:
    """The real model, with parameters on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return GPT(config)


def test_gpt3_training_compute():
    # Brown et al. 2020, table D.1: GPT-3 175B on 300B tokens took 3.14e23 FLOPs
    assert flops.training_flops(175e9, 300e9) == pytest.approx(3.14e23, rel=0.01)


def test_gpt2_small_parameters_and_flops_per_token():
    # HF's GPT-2 small has 124,439,808 parameters; 85M of them non-embedding
    assert flops.count_parameters(GPT2_SMALL) == 124_439_808
    non_embedding = flops.count_parameters(GPT2_SMALL, non_embedding=True)
    assert non_embedding == 85_056_000
    # nanoGPT's estimate_mfu: 6N + 12LHQT with N = parameters minus positions
    nanogpt = 6 * (124_439_808 - 1024 * 768) + 12 * 12 * 12 * 64 * 1024
    assert flops.flops_per_token(GPT2_SMALL) == nanogpt == 855_166_464
    # = 6 x (85M non-embedding + the 38.6M head) + the attention term
    attention = 12 * 12 * 768 * 1024
    assert flops.matmul_weights(GPT2_SMALL) == non_embedding + 50257 * 768
    assert nanogpt == 6 * flops.matmul_weights(GPT2_SMALL) + attention
    assert attention / nanogpt == pytest.approx(0.13, abs=0.005)
    # forward only: a third at the full context, less with a shorter one
    assert flops.forward_flops_per_token(GPT2_SMALL) == nanogpt / 3
    assert flops.forward_flops_per_token(GPT2_SMALL, context=0) == (
        2 * flops.matmul_weights(GPT2_SMALL))


# every recipe the project trains: the presets, each track's reference plan, and
# shapes that exercise each option of ModelConfig
RECIPES = {
    **{f"preset {p.stem}": tomllib.loads(p.read_text())["model"]
       for p in sorted(PRESETS_DIR.glob("*.toml"))},
    **{f"{name} plan": make_plan(t.budgets[0], name).model
       for name, t in TRACKS.items()},
    "gqa untied swiglu rope": {
        "vocab_size": 1000, "context_length": 64, "n_layer": 3, "n_head": 8,
        "n_kv_head": 2, "d_model": 256, "position": "rope", "norm": "rmsnorm",
        "mlp": "swiglu", "bias": False, "tie_weights": False},
    "mqa with biases": {
        "vocab_size": 300, "context_length": 16, "n_layer": 2, "n_head": 4,
        "n_kv_head": 1, "d_model": 64, "mlp": "swiglu", "bias": True},
    "d_ff given, layernorm without bias": {
        "vocab_size": 500, "context_length": 32, "n_layer": 1, "n_head": 2,
        "d_model": 64, "d_ff": 100, "norm": "layernorm", "bias": False},
}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_the_formulas_count_the_real_model(recipe):
    config = model_config(RECIPES[recipe], vocab_size=8192)  # for "auto"
    gpt = meta_gpt(config)
    assert flops.count_parameters(config) == gpt.num_parameters()
    assert flops.count_parameters(config, True) == gpt.num_parameters(
        non_embedding=True)
    assert gpt.flops_per_token() == flops.flops_per_token(config)
    assert flops.forward_flops_per_token(config) == pytest.approx(
        flops.flops_per_token(config) / 3)
