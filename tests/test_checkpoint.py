"""Checkpoints: safetensors + JSON contents, exact round trips, RNG state, atomic
writes, keep-last-K, and load_model for the other commands."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from llm_reference import checkpoint
from llm_reference.__main__ import main
from llm_reference.errors import UserError
from llm_reference.model import GPT, ModelConfig
from llm_reference.optim import make_optimizer
from llm_reference.train import train


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
    assert {"python", "numpy", "torch"} <= state["rng"][0].keys()  # one per rank
    assert state["sha256"].keys() == {"model.safetensors", "optimizer.safetensors"}

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


# --- verification: a damaged checkpoint is a one-line error, never a traceback ------


def saved(tmp_path) -> tuple:
    torch.manual_seed(0)
    model = small_model()
    path = checkpoint.save_checkpoint(tmp_path, 1, model, trained(model, 1),
                                      {"config": {"model": model.config.to_dict()}},
                                      keep_last=3)
    return model, path


def truncate(file):
    data = file.read_bytes()
    file.write_bytes(data[:len(data) // 2])


def overwrite_header(file):
    data = bytearray(file.read_bytes())
    data[:8] = b"\xff" * 8  # the header's length: now absurd
    file.write_bytes(bytes(data))


def flip_a_weight(file):
    data = bytearray(file.read_bytes())
    data[-3] ^= 0xFF  # in the last tensor's bytes: the header still parses
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, overwrite_header, flip_a_weight])
@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors"])
def test_a_damaged_file_is_a_one_line_error_naming_it(tmp_path, damage, name):
    model, path = saved(tmp_path)
    checkpoint.verify_checkpoint(path, checkpoint.shapes_of(model))  # fine as saved
    damage(path / name)
    with pytest.raises(UserError) as e:
        checkpoint.verify_checkpoint(path, checkpoint.shapes_of(model))
    message = str(e.value)
    assert "\n" not in message and str(path / name) in message
    assert "is damaged" in message and "fall back to an earlier checkpoint" in message


def test_weights_of_another_shape_are_refused(tmp_path):
    _, path = saved(tmp_path)
    other = GPT(ModelConfig(vocab_size=64, context_length=8, n_layer=2, n_head=2,
                            d_model=32))
    with pytest.raises(UserError, match=r"tok_emb.weight has shape \[64, 16\], the "
                                        r"model's is \[64, 32\]"):
        checkpoint.verify_checkpoint(path, checkpoint.shapes_of(other))
    deeper = GPT(ModelConfig(vocab_size=64, context_length=8, n_layer=3, n_head=2,
                             d_model=16))
    with pytest.raises(UserError, match="lacks blocks.2"):
        checkpoint.verify_checkpoint(path, checkpoint.shapes_of(deeper))


def test_load_model_verifies_the_checkpoint(tmp_path):
    _, path = saved(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    truncate(path / "model.safetensors")
    with pytest.raises(UserError, match="model.safetensors is damaged"):
        checkpoint.load_model(tmp_path)


def test_checkpoints_without_recorded_hashes_still_load(tmp_path):
    """Checkpoints written before sha256 was recorded: header and shapes only."""
    model, path = saved(tmp_path)
    state = json.loads((path / "state.json").read_text())
    del state["sha256"]
    state["rng"] = state["rng"][0]  # and the RNG of rank 0 alone, as then
    (path / "state.json").write_text(json.dumps(state))
    loaded = checkpoint.verify_checkpoint(path, checkpoint.shapes_of(model))
    assert checkpoint.rng_states(loaded) == [state["rng"]]


def test_resume_passes_over_a_damaged_checkpoint_with_a_warning(tiny_config, losses,
                                                                tmp_path, capsys):
    config = tiny_config(max_steps=20, keep_last=3)
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(config, full)
    shutil.copytree(full, cut)
    truncate(cut / "checkpoints" / "step_0000020" / "model.safetensors")
    capsys.readouterr()
    train(config, cut, resume=True)
    err = capsys.readouterr().err
    assert "warning: checkpoint file" in err and "resuming from step 10" in err
    assert losses(cut) == losses(full)  # from step 10 onto the same trajectory
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == [
        "step_0000010", "step_0000020"]  # the damaged one set aside, then deleted
    checkpoint.verify_checkpoint(cut / "checkpoints" / "step_0000020")


def test_resume_with_no_usable_checkpoint_is_a_one_line_error(tiny_config, tmp_path,
                                                              capsys):
    train(tiny_config(max_steps=10), tmp_path / "run")
    overwrite_header(tmp_path / "run/checkpoints/step_0000010/model.safetensors")
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "run"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no usable checkpoint in ") and err.count("\n") == 1
