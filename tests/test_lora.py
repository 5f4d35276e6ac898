"""LoRA: wrapping by name pattern, parameter count, zero-init, training only the
adapters (base weights bitwise unchanged), merging, and saving adapters alone."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from llm_reference.errors import UserError
from llm_reference.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    load_adapters,
    lora_layers,
    lora_parameter_count,
    matches,
    merge_lora,
    save_adapters,
)
from llm_reference.model import GPT, ModelConfig

TINY = dict(vocab_size=64, context_length=16, n_layer=2, n_head=2, d_model=32)
RECIPES = {
    "gpt2": TINY,
    "llama": dict(TINY, position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=1,
                  bias=False, tie_weights=False),
}


def base_model(recipe: str = "gpt2") -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**RECIPES[recipe])).eval()


def randomize_adapters(model: nn.Module) -> None:
    """B starts at zero (a no-op update); give it values so the update shows."""
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(0.0, 0.1)


def test_patterns_match_module_names():
    assert matches("blocks.0.attn.qkv", ("attn.qkv",))
    assert matches("blocks.1.mlp.down", ("mlp.*",))
    assert not matches("blocks.1.mlp.down", ("attn.*",))
    assert matches("lm_head", ("lm_head",))
    assert not matches("blocks.0.attn.qkv_extra", ("attn.qkv",))


@pytest.mark.parametrize("recipe", RECIPES)
def test_trainable_parameters_are_r_times_in_plus_out(recipe):
    model = base_model(recipe)
    names = apply_lora(model, LoRAConfig(rank=4, targets=("attn.qkv", "attn.proj",
                                                          "mlp.*")))
    per_block = 2 + (3 if recipe == "llama" else 2)
    assert len(names) == 2 * per_block
    expected = 0
    for name in names:
        base = model.get_submodule(name).base
        expected += 4 * (base.in_features + base.out_features)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == expected == lora_parameter_count(model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        f"{name}.{part}" for name in names for part in ("lora_A", "lora_B")}


def test_adapted_model_starts_equal_to_the_base():
    model, idx = base_model(), torch.randint(0, 64, (2, 16))
    before = model(idx)[0]
    apply_lora(model, LoRAConfig(rank=8))
    assert torch.equal(model(idx)[0], before)  # B = 0: the update is exactly zero


@pytest.mark.parametrize("recipe", RECIPES)
def test_merged_output_equals_adapted_output(recipe):
    model, idx = base_model(recipe), torch.randint(0, 64, (2, 16))
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, targets=("attn.*", "mlp.*")))
    randomize_adapters(model)
    adapted = model(idx)[0]
    merge_lora(model)
    assert not lora_layers(model)
    assert all(type(m) is not LoRALinear for m in model.modules())
    torch.testing.assert_close(model(idx)[0], adapted, rtol=1e-5, atol=1e-5)


def test_merge_adds_scaled_b_times_a():
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, rank=2, alpha=6.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    w = base.weight.detach().clone()
    expected = w + 3.0 * layer.lora_B.detach() @ layer.lora_A.detach()
    holder = nn.Sequential(layer)
    merge_lora(holder)
    torch.testing.assert_close(holder[0].weight.detach(), expected)


def test_training_changes_only_the_adapters():
    model = base_model()
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, LoRAConfig(rank=4, targets=("attn.qkv", "mlp.*")))
    a_before = {n: m.lora_A.detach().clone() for n, m in lora_layers(model).items()}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    model.train()
    for step in range(5):
        generator = torch.Generator().manual_seed(step)
        idx = torch.randint(0, 64, (4, 16), generator=generator)
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, tensor in frozen.items():  # bitwise: not one bit of the base moved
        key = name if name in model.state_dict() else name.replace(
            ".weight", ".base.weight").replace(".bias", ".base.bias")
        assert torch.equal(model.state_dict()[key], tensor), name
    for name, layer in lora_layers(model).items():
        assert layer.lora_B.abs().sum() > 0
        assert not torch.equal(layer.lora_A, a_before[name])


def test_dropout_acts_only_in_training():
    model, idx = base_model(), torch.randint(0, 64, (2, 16))
    apply_lora(model, LoRAConfig(rank=4, dropout=0.5))
    randomize_adapters(model)
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])
    model.train()
    torch.manual_seed(0)
    first = model(idx)[0]
    assert not torch.equal(first, model(idx)[0])


def test_adapters_save_alone_and_load_onto_a_fresh_base(tmp_path):
    model, idx = base_model(), torch.randint(0, 64, (2, 16))
    config = LoRAConfig(rank=4, alpha=8.0, targets=("attn.qkv", "mlp.up"))
    names = apply_lora(model, config)
    randomize_adapters(model)
    save_adapters(model, config, tmp_path, {"base_run": "runs/x"})
    saved = json.loads((tmp_path / "adapter.json").read_text())
    assert saved["rank"] == 4 and saved["alpha"] == 8.0
    assert saved["targets"] == ["attn.qkv", "mlp.up"] and saved["layers"] == names
    assert saved["base_run"] == "runs/x"
    from safetensors.torch import load_file
    tensors = load_file(tmp_path / "adapter.safetensors")
    assert set(tensors) == {f"{n}.{p}" for n in names for p in ("lora_A", "lora_B")}
    fresh = base_model()
    assert load_adapters(fresh, tmp_path) == config
    assert torch.equal(fresh(idx)[0], model(idx)[0])


def test_bad_configs_are_user_errors():
    with pytest.raises(UserError, match="rank"):
        LoRAConfig(rank=0)
    with pytest.raises(UserError, match="dropout"):
        LoRAConfig(dropout=1.0)
    with pytest.raises(UserError, match="match no Linear"):
        apply_lora(base_model(), LoRAConfig(targets=("attention.q",)))
