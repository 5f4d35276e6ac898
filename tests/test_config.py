"""Configs: presets, layering (preset < file < --set), TOML round trip, validation."""

from __future__ import annotations

import tomllib

import pytest

from llm_reference.config import (
    RunConfig,
    TrainConfig,
    load_config,
    model_config,
    parse_override,
    preset_names,
    to_toml,
)
from llm_reference.errors import UserError
from llm_reference.model import GPT


def params(name: str, vocab_size: int = 8192) -> tuple[GPT, RunConfig]:
    config = load_config(name)
    return GPT(model_config(config.model, vocab_size)), config


def test_all_presets_exist_and_validate():
    assert preset_names() == ["gpt2-124m", "llama-style", "small", "tiny"]


def test_tiny_preset_is_a_cpu_model():
    model, config = params("tiny")
    assert 1e6 <= model.num_parameters() <= 3e6
    assert 128 <= model.config.context_length <= 256
    assert config.model["vocab_size"] == "auto"
    assert config.train.dtype == "float32" and not config.train.compile


def test_small_preset_is_about_one_million_tokens():
    model, config = params("small")
    t = config.train
    tokens = t.batch_size * t.grad_accum * model.config.context_length * t.max_steps
    assert tokens == pytest.approx(1e6, rel=0.1)


def test_gpt2_124m_preset_has_gpt2_small_shapes():
    model, config = params("gpt2-124m")
    c = model.config
    assert (c.n_layer, c.d_model, c.n_head, c.context_length, c.vocab_size) == (
        12, 768, 12, 1024, 50304)
    assert (c.position, c.norm, c.mlp, c.bias, c.tie_weights) == (
        "learned", "layernorm", "gelu", True, True)
    assert model.num_parameters() == pytest.approx(124.5e6, rel=0.01)
    t = config.train
    assert t.batch_size * t.grad_accum * c.context_length == 524_288


def test_llama_style_preset_uses_the_modern_recipe():
    model, config = params("llama-style")
    c = model.config
    assert (c.position, c.norm, c.mlp, c.bias, c.tie_weights) == (
        "rope", "rmsnorm", "swiglu", False, False)
    assert 1 < c.kv_heads < c.n_head  # grouped-query attention
    assert config.train.schedule == "wsd"


def test_overrides_are_toml_literals_or_bare_strings():
    assert parse_override("train.lr=3e-4") == ("train", "lr", 3e-4)
    assert parse_override("model.n_layer=2") == ("model", "n_layer", 2)
    assert parse_override("train.compile=true") == ("train", "compile", True)
    assert parse_override("train.schedule=wsd") == ("train", "schedule", "wsd")
    assert parse_override('train.schedule="wsd"') == ("train", "schedule", "wsd")
    with pytest.raises(UserError, match="expected TABLE.KEY=VALUE"):
        parse_override("lr=3")


def test_layers_preset_then_file_then_set(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("[model]\nn_layer = 3\n[train]\nlr = 1e-3\nbatch_size = 8\n")
    config = load_config("tiny", file, ["train.lr=5e-4", "model.d_model=64"])
    assert config.model["n_layer"] == 3  # file over preset
    assert config.model["d_model"] == 64  # --set over preset
    assert config.train.lr == 5e-4  # --set over file
    assert config.train.batch_size == 8  # file over preset
    assert config.train.max_steps == load_config("tiny").train.max_steps  # preset
    assert load_config().train == TrainConfig()  # nothing: the defaults


def test_config_round_trips_through_toml():
    config = load_config("llama-style", overrides=["train.inject_nan_at=3"])
    text = to_toml(config.to_dict())
    again = RunConfig.from_dict(tomllib.loads(text))
    assert again == config


def test_vocab_size_auto_comes_from_the_data():
    assert model_config({"vocab_size": "auto", "d_model": 32}, 300).vocab_size == 300
    assert model_config({"d_model": 32}, 300).vocab_size == 300
    assert model_config({"vocab_size": 512, "d_model": 32}, 300).vocab_size == 512


def test_ints_are_accepted_for_floats():
    config = load_config(overrides=["train.lr=1", "train.min_lr=0"])
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)


@pytest.mark.parametrize("override, message", [
    ("train.lr=-1", "config train.lr: must be > 0, got -1"),
    ("train.min_lr=1", "config train.min_lr: must be in [0, train.lr = 0.001], got 1"),
    ("train.batch_size=0", "config train.batch_size: must be >= 1, got 0"),
    ("train.batch_size=2.5", "config train.batch_size: must be an integer, got 2.5"),
    ("train.compile=1", "config train.compile: must be true/false, got 1"),
    ("train.max_steps=true", "config train.max_steps: must be an integer, got true"),
    ("train.schedule=linear",
     "config train.schedule: must be one of 'cosine', 'wsd', got \"linear\""),
    ("train.dtype=fp8", "config train.dtype: must be one of 'float32', 'bfloat16', "
                        "'float16', got \"fp8\""),
    ("train.beta2=1", "config train.beta2: must be in [0, 1), got 1"),
    ("train.device=tpu", "config train.device: must be 'auto', 'cpu', 'cuda', "
                         "'cuda:N' or 'mps', got \"tpu\""),
    ("train.inject_nan_at=0", "config train.inject_nan_at: must be a step >= 1, got 0"),
    ("train.learning_rate=1", "config train.learning_rate: unknown field"),
    ("model.n_layer=0", "config model.n_layer = 0: must be a positive integer"),
    ("model.mlp=relu", "config model.mlp = 'relu': must be one of"),
    ("model.layers=2", "config model.layers: unknown field"),
    ("optim.lr=1", "config: unknown table [optim]"),
])
def test_bad_values_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(UserError) as error:
        load_config(overrides=[override])
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_bad_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown preset 'huge'; choose one of"):
        load_config("huge")
    with pytest.raises(UserError, match="config file .* not found"):
        load_config(config_file=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nlr = 1")
    with pytest.raises(UserError, match="config file .*broken.toml: "):
        load_config(config_file=broken)
    flat = tmp_path / "flat.toml"
    flat.write_text("lr = 1\n")
    with pytest.raises(UserError, match=r"unknown table \[lr\]"):
        load_config(config_file=flat)
