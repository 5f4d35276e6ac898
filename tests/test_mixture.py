"""Weighted mixtures of prepared folders: deterministic, resumable, validated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llm_reference.config import RunConfig
from llm_reference.errors import UserError
from llm_reference.mixture import MixtureBatches
from llm_reference.shards import token_dtype


def folder(path, low: int, tokenizer: bytes = b"{}", tokens: int = 5000):
    """A prepared folder whose train and val ids all lie in [low, low + 100)."""
    import json

    path.mkdir()
    ids = (low + np.arange(tokens) % 100).astype(token_dtype(512))
    for split in ("train", "val"):
        ids.tofile(path / f"{split}_000.bin")
    (path / "tokenizer.json").write_bytes(tokenizer)
    (path / "meta.json").write_text(json.dumps({
        "vocab_size": 512, "dtype": "uint16", "tokenizer": "tokenizer.json",
        "train_tokens": tokens, "val_tokens": tokens, "shards": {
            split: [{"file": f"{split}_000.bin", "tokens": tokens}]
            for split in ("train", "val")}}))
    return str(path)


def test_rows_follow_the_weights_and_depend_only_on_seed_rank_index(tmp_path):
    a, b = folder(tmp_path / "a", 0), folder(tmp_path / "b", 200)
    mix = MixtureBatches({a: 0.7, b: 0.3}, "train", 64, 16, seed=3)
    x, y = mix.get(5)
    assert x.shape == y.shape == (64, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    from_a = (x < 100).all(dim=1)
    assert torch.equal(from_a | (x >= 200).all(dim=1), torch.ones(64, dtype=bool))
    share = np.mean([(mix.get(i)[0] < 100).all(dim=1).float().mean().item()
                     for i in range(30)])
    assert 0.6 < share < 0.8
    again = MixtureBatches({a: 0.7, b: 0.3}, "train", 64, 16, seed=3)
    assert torch.equal(again.get(5)[0], x)  # a resumed run sees the same batch
    other_rank = MixtureBatches({a: 0.7, b: 0.3}, "train", 64, 16, seed=3, rank=1,
                                world_size=2)
    assert not torch.equal(other_rank.get(5)[0], x)


def test_bad_weights_and_mixed_tokenizers_are_one_line_errors(tmp_path):
    a = folder(tmp_path / "a", 0)
    b = folder(tmp_path / "b", 200, tokenizer=b'{"other": 1}')
    with pytest.raises(UserError, match="must be > 0"):
        MixtureBatches({a: 1.0, str(tmp_path / "x"): 0.0}, "train", 4, 8, seed=0)
    with pytest.raises(UserError, match="different tokenizers"):
        MixtureBatches({a: 1.0, b: 1.0}, "train", 4, 8, seed=0)


def test_the_train_config_checks_data_mix():
    def config(**train):
        return RunConfig.from_dict({"train": train})

    ok = config(data_dir="data/a", data_mix={"data/a": 0.7, "data/b": 0.3})
    assert ok.train.data_mix == {"data/a": 0.7, "data/b": 0.3}
    with pytest.raises(UserError, match=r"train.data_mix: the weight of 'data/b'"):
        config(data_dir="data/a", data_mix={"data/a": 1, "data/b": -1})
    with pytest.raises(UserError, match="must include train.data_dir"):
        config(data_dir="data/c", data_mix={"data/a": 1})
    with pytest.raises(UserError, match="must be a table"):
        config(data_mix=0.5)
