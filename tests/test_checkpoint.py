"""Checkpoints: safetensors + JSON contents, exact round trips, RNG state, atomic
writes, keep-last-K, and load_model for the other commands."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from llm_reference import checkpoint
from llm_reference.errors import UserError
from llm_reference.model import GPT, ModelConfig
from llm_reference.optim import make_optimizer


def small_model() -> GPT:
    return GPT(ModelConfig(vocab_size=64, context_length=8, n_layer=2, n_head=2,
                           d_model=16))


def trained(model: GPT, steps: int = 2) -> torch.optim.AdamW:
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    for _ in range(steps):
        x = torch.randint(0, 64, (2, 8))
        model(x, x)[1].backward()
        optimizer.step()
        optimizer.zero_grad()
    return optimizer


def test_round_trip_restores_weights_and_optimizer_exactly(tmp_path):
    torch.manual_seed(0)
    model = small_model()
    optimizer = trained(model)
    path = checkpoint.save_checkpoint(tmp_path, 2, model, optimizer,
                                      {"data_position": 2}, keep_last=3)
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors", "optimizer.safetensors", "state.json"]
    tensors = load_file(path / "optimizer.safetensors")
    assert {"0.exp_avg", "0.exp_avg_sq", "0.step"} <= tensors.keys()
    state = json.loads((path / "state.json").read_text())
    assert state["step"] == 2 and state["data_position"] == 2
    assert {"python", "numpy", "torch"} <= state["rng"].keys()

    copy = small_model()
    copy_optimizer = make_optimizer(copy, lr=1e-2, weight_decay=0.1)
    checkpoint.load_checkpoint(path, copy, copy_optimizer)
    for a, b in zip(model.state_dict().values(), copy.state_dict().values()):
        assert torch.equal(a, b)
    saved, loaded = optimizer.state_dict(), copy_optimizer.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for index, per_param in saved["state"].items():
        for name, value in per_param.items():
            assert torch.equal(value, loaded["state"][index][name])
    # and both continue identically
    x = torch.randint(0, 64, (2, 8))
    for m, o in ((model, optimizer), (copy, copy_optimizer)):
        m(x, x)[1].backward()
        o.step()
    for a, b in zip(model.parameters(), copy.parameters()):
        assert torch.equal(a, b)


def test_rng_states_are_restored(tmp_path):
    state = checkpoint.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(5)  # move every generator on
    checkpoint.set_rng_state(json.loads(json.dumps(state)))  # through JSON
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_keep_last_and_resaving_a_step(tmp_path):
    model = small_model()
    optimizer = trained(model, steps=1)
    for step in (1, 2, 3, 4):
        checkpoint.save_checkpoint(tmp_path, step, model, optimizer, {}, keep_last=2)
    assert [checkpoint.checkpoint_step(p)
            for p in checkpoint.list_checkpoints(tmp_path)] == [3, 4]
    checkpoint.save_checkpoint(tmp_path, 4, model, optimizer, {"again": 1}, keep_last=2)
    assert checkpoint.read_state(checkpoint.find_checkpoint(tmp_path))["again"] == 1
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()
            if p.name.startswith(".")] == []


def test_a_failed_save_leaves_no_checkpoint(tmp_path, monkeypatch):
    model = small_model()
    optimizer = trained(model, steps=1)
    checkpoint.save_checkpoint(tmp_path, 1, model, optimizer, {}, keep_last=3)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(tmp_path, 2, model, optimizer, {}, keep_last=3)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_0000001"]


def test_find_checkpoint_errors_name_the_run(tmp_path):
    with pytest.raises(UserError, match="no checkpoint in .*; train first"):
        checkpoint.find_checkpoint(tmp_path)
    model = small_model()
    checkpoint.save_checkpoint(tmp_path, 5, model, trained(model, 1), {}, keep_last=2)
    with pytest.raises(UserError, match="no checkpoint for step 4 .*steps: 5$"):
        checkpoint.find_checkpoint(tmp_path, step=4)


def test_load_model_gives_the_trained_model_and_tokenizer(tiny_run):
    model, tokenizer, state = checkpoint.load_model(tiny_run)
    assert not model.training and state["step"] == 20
    assert state["data_position"] == 20 and state["tokenizer"] == "tokenizer.json"
    assert state["config"]["model"]["vocab_size"] == tokenizer.vocab_size == 384
    earlier, _, state10 = checkpoint.load_model(tiny_run, step=10)
    assert state10["step"] == 10
    x = torch.tensor([tokenizer.encode("def main():\n    return 0")])
    assert not torch.equal(model(x)[0], earlier(x)[0])
    assert tokenizer.decode(x[0].tolist()) == "def main():\n    return 0"
