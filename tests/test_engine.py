"""Batched decoding and the KV cache pool: `GPT.decode_step` over rows at different
positions gives the logits `GPT.forward` gives each sequence alone."""

from __future__ import annotations

import pytest
import torch

from llm_reference.kv_pool import KVPool
from llm_reference.model import GPT, KVCache, ModelConfig

TINY = dict(vocab_size=50, context_length=16, n_layer=2, n_head=4, d_model=32)
RECIPES = {
    "gpt2": {},
    "llama": dict(position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2,
                  bias=False, tie_weights=False),
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_decode_step_equals_forward_alone(recipe):
    torch.manual_seed(0)
    model = GPT(ModelConfig(**TINY, **RECIPES[recipe])).eval()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10]]  # three different positions
    pool = KVPool(model, n_slots=4)
    slots = [pool.take() for _ in prompts]
    with torch.inference_mode():
        for slot, prompt in zip(slots, prompts):  # prefill each into its slot
            model(torch.tensor([prompt]), kv_cache=pool.view(slot, 0))
        new = torch.tensor([11, 12, 13])
        positions = torch.tensor([len(p) for p in prompts])
        batched = model.decode_step(new, positions, pool.cache, torch.tensor(slots))
        for i, prompt in enumerate(prompts):
            alone, _ = model(torch.tensor([prompt + [int(new[i])]]))  # no cache
            torch.testing.assert_close(batched[i], alone[0, -1], atol=1e-5, rtol=1e-4)


def test_pool_hands_out_each_slot_once():
    model = GPT(ModelConfig(**TINY))
    pool = KVPool(model, n_slots=2)
    a, b = pool.take(), pool.take()
    assert {a, b} == {0, 1} and pool.take() is None
    pool.give_back(a)
    assert pool.take() == a
    cache = KVCache(model.config, batch_size=2)
    assert pool.nbytes() == sum(t.numel() * 4 for t in cache.k + cache.v)
