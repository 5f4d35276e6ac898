"""Training and KV-cache memory (memory.py) against the papers' counts."""

import pytest

from llm_reference import memory
from llm_reference.flops import count_parameters
from llm_reference.model_config import ModelConfig

GiB = 2**30


def test_mixed_precision_adamw_is_16_bytes_per_parameter():
    # Rajbhandari et al. 2020 (ZeRO), section 3.1: 2 + 2 + K with K = 12
    mixed = memory.BYTES_PER_PARAM["mixed"]
    assert sum(mixed.values()) == 16
    assert mixed["16-bit weights"] + mixed["16-bit gradients"] == 4
    assert memory.state_bytes_per_param("float32") == 16
    assert memory.state_bytes_per_param("bfloat16") == 18  # autocast's bf16 copies


def test_kv_cache_of_a_llama2_7b_shape():
    # Llama 2 7B (32 layers, 32 heads of 128): 0.5 MiB per token in 16 bits
    llama = ModelConfig(n_layer=32, n_head=32, d_model=4096)
    assert memory.kv_cache_bytes(llama, tokens=4096) == 2 * GiB
    # GQA with 8 k/v heads keeps a quarter
    gqa = ModelConfig(n_layer=32, n_head=32, n_kv_head=8, d_model=4096)
    assert memory.kv_cache_bytes(gqa, 4096) == GiB / 2


def test_korthikanti_activation_formula():
    s, b, h, a = 2048, 1, 12288, 96  # GPT-3 175B's layer
    full = memory.activation_bytes_per_layer(s, b, h, a, flash=False)
    assert full == s * b * h * (34 + 5 * a * s / h)
    assert memory.activation_bytes_per_layer(s, b, h, a) == 34 * s * b * h
    assert memory.activation_bytes_per_layer(s, b, h, a, bytes_per_value=4) == (
        68 * s * b * h)


def test_checkpointing_and_sharding_save_memory():
    model = ModelConfig(vocab_size=50304, context_length=1024, n_layer=12,
                        n_head=12, d_model=768)
    plain = memory.training_memory(model, micro_batch=16)
    ckpt = memory.training_memory(model, micro_batch=16, checkpointing=True)
    sharded = memory.training_memory(model, micro_batch=16, shards=8)
    assert ckpt["activations"] < plain["activations"] / 5
    assert sharded["model_states"] == pytest.approx(plain["model_states"] / 8)
    assert plain["model_states"] == count_parameters(model) * 18
    assert plain["total"] == sum(plain[k] for k in ("model_states", "activations",
                                                    "logits"))


def test_logits_are_one_chunk_of_fp32_logits_and_their_gradient():
    # the chunked cross-entropy keeps one chunk alive, never the whole (B, T, V)
    model = ModelConfig(vocab_size=32768, context_length=2048, n_layer=2,
                        n_head=4, d_model=256)
    big = memory.training_memory(model, micro_batch=16)
    assert big["logits"] == memory.LOSS_CHUNK_TOKENS * 32768 * (4 + 4)
    small = memory.training_memory(model, micro_batch=1)  # 2048 < one chunk
    assert small["logits"] == 2048 * 32768 * 8
    # DDP with gradient_as_bucket_view=True adds no copy: same per-device states
    assert big["model_states"] == count_parameters(model) * 18
