"""dataset: random training windows from a token array, reproducible by index.

Protocol: a class

    Batches(tokens, batch_size: int, context_length: int, seed: int)
    .get(index: int) -> (x, y)

`tokens` is a 1-D numpy array of uint16 ids (what `np.memmap` of a shard gives).
x and y are int64 tensors of shape (batch_size, context_length): each row of x is
T = context_length consecutive tokens starting at a random position, and y is the
same window moved one token on (y[b, t] = tokens[start + t + 1]). Every start
0 .. len(tokens) - T - 1 can be drawn. Batch `index` depends only on (seed, index):
calling get(7) twice, or on a new object with the same seed, gives the same batch.
Fewer than context_length + 1 tokens is an error (raise any exception).

Reference: `llm_reference.data.Batches` (which reads a prepared data folder; the
check writes the tokens into one).
Command: python -m llm_reference check dataset --impl my_data:Batches
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Batches
from .runner import Node, as_tensor, expect_equal, fail


class ReferenceBatches:
    """`data.Batches` over a token array: writes it as a one-shard data folder."""

    def __init__(self, tokens: np.ndarray, batch_size: int, context_length: int,
                 seed: int):
        self._dir = tempfile.TemporaryDirectory(prefix="check-dataset-")
        folder = Path(self._dir.name)
        tokens.astype("<u2").tofile(folder / "train_000.bin")
        shard = {"file": "train_000.bin", "tokens": len(tokens)}
        meta = {"vocab_size": 65536, "dtype": "uint16", "tokenizer": "tokenizer.json",
                "train_tokens": len(tokens), "val_tokens": 0,
                "shards": {"train": [shard], "val": []}}
        (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        self._batches = Batches(folder, "train", batch_size, context_length, seed)

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._batches.get(index)


node = Node(
    id="dataset",
    title="Tokenized, memory-mapped shards; batching",
    protocol=__doc__,
    example="my_data:Batches",
    reference=lambda: ReferenceBatches,
)

OFFSET = 40_000  # token t of the test data is OFFSET + t: above int16's range


def numbered_tokens(n: int) -> np.ndarray:
    """Tokens OFFSET, OFFSET + 1, …: a window's first token tells where it starts."""
    return (OFFSET + np.arange(n)).astype(np.uint16)


def get(impl: Any, tokens: np.ndarray, batch_size: int, context_length: int,
        seed: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = impl(tokens, batch_size, context_length, seed).get(index)
    return as_tensor(x, "x"), as_tensor(y, "y")


def x_of(batches: Any, index: int) -> torch.Tensor:
    return as_tensor(batches.get(index)[0], "x")


@node.check("shapes_and_dtype", section="Sampling batches",
            hint="return x and y as int64 tensors of shape (batch_size, "
                 "context_length)")
def shapes_and_dtype(impl: Any) -> None:
    x, y = get(impl, numbered_tokens(100), 4, 8, seed=0, index=0)
    for name, t in (("x", x), ("y", y)):
        expect_equal(tuple(t.shape), (4, 8), f"{name}.shape")
        expect_equal(t.dtype, torch.int64, f"{name}.dtype")


@node.check("targets_are_next_tokens", section="Sampling batches",
            hint="read context_length + 1 tokens from a start; x is the first T, "
                 "y the last T")
def targets_are_next_tokens(impl: Any) -> None:
    x, y = get(impl, numbered_tokens(100), 4, 8, seed=0, index=0)
    steps = torch.arange(8)
    for b in range(4):
        if not torch.equal(x[b], x[b, 0] + steps):
            fail(f"x[{b}] = {x[b].tolist()} is not consecutive tokens of the data")
        if not torch.equal(y[b], x[b] + 1):
            fail(f"y[{b}] = {y[b].tolist()} is not x[{b}] moved on by one token "
                 f"(x[{b}] = {x[b].tolist()})")


@node.check("large_token_ids", section="Sampling batches",
            hint="convert the uint16 tokens to int64, not to a signed 16-bit type")
def large_token_ids(impl: Any) -> None:
    x, _ = get(impl, numbered_tokens(100), 4, 8, seed=0, index=0)
    if int(x.min()) < OFFSET:
        fail(f"token ids >= {OFFSET} came back as {int(x.min())}")


@node.check("reproducible", section="Reproducible batches",
            hint="draw batch `index` from a generator seeded with (seed, index), "
                 "not from global random state")
def reproducible(impl: Any) -> None:
    tokens = numbered_tokens(1000)
    batches = impl(tokens, 4, 8, 1)
    first = x_of(batches, 3)
    if not torch.equal(x_of(batches, 3), first):
        fail("get(3) gave a different batch the second time")
    if not torch.equal(x_of(impl(tokens, 4, 8, 1), 3), first):
        fail("a new object with the same seed gave a different batch 3")
    if torch.equal(x_of(batches, 4), first):
        fail("batches 3 and 4 are the same")
    if torch.equal(x_of(impl(tokens, 4, 8, 2), 3), first):
        fail("seeds 1 and 2 gave the same batch 3")


@node.check("every_window_reachable", section="Sampling batches",
            hint="starts go from 0 to len(tokens) - context_length - 1 inclusive: "
                 "len(tokens) - context_length windows")
def every_window_reachable(impl: Any) -> None:
    T, windows = 8, 4  # 12 tokens hold 4 windows of 9: starts 0, 1, 2, 3
    batches = impl(numbered_tokens(T + windows), 8, T, 0)
    starts = set()
    for index in range(40):
        x = x_of(batches, index)
        if x.shape != (8, T):
            fail(f"x has shape {tuple(x.shape)}, expected (8, {T})")
        starts |= set((x[:, 0] - OFFSET).tolist())
    expect_equal(sorted(starts), list(range(windows)),
                 f"the starts drawn from {T + windows} tokens with context_length "
                 f"{T}")


@node.check("exact_length", section="Sampling batches",
            hint="context_length + 1 tokens hold exactly one window")
def exact_length(impl: Any) -> None:
    tokens = numbered_tokens(9)
    x, y = get(impl, tokens, 2, 8, seed=0, index=0)
    expected = torch.from_numpy(tokens.astype(np.int64))
    for b in range(2):
        expect_equal(x[b].tolist(), expected[:-1].tolist(), f"x[{b}]")
        expect_equal(y[b].tolist(), expected[1:].tolist(), f"y[{b}]")


@node.check("too_short_raises", section="Sampling batches",
            hint="raise a clear error when the data has fewer than "
                 "context_length + 1 tokens")
def too_short_raises(impl: Any) -> None:
    try:
        impl(numbered_tokens(8), 2, 8, 0).get(0)
    except NotImplementedError:
        raise  # not written yet is not a refusal: a FAIL
    except Exception:
        return
    fail("8 tokens with context_length 8 gave a batch; expected an error")
