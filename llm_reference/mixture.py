"""A weighted mixture of prepared data folders, e.g. 70% web text and 30% code.

`train.data_mix = {"data/web" = 0.7, "data/code" = 0.3}` draws each row of a batch
from folder f with probability weight_f / sum(weights). Like `Batches`, batch
`index` depends only on (seed, rank, index): one generator picks each row's folder,
then draws the rows of each folder in turn, so a resumed run sees exactly the
batches it would have seen. The folders must share one tokenizer, or the same id
would mean different text.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data import Batches, inputs_and_targets, load_meta
from .errors import UserError
from .sources import file_sha256

if TYPE_CHECKING:
    import torch


class MixtureBatches:
    """`Batches` over several folders, mixed by weight; the same `get(index)`."""

    def __init__(self, weights: dict[str, float], split: str, batch_size: int,
                 context_length: int, seed: int, rank: int = 0, world_size: int = 1):
        check_mixture(weights)
        self.folders = list(weights)
        total = sum(weights.values())
        self.p = np.array([weights[f] / total for f in self.folders])  # (F,)
        self.parts = [Batches(f, split, batch_size, context_length, seed, rank,
                              world_size) for f in self.folders]
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.tokens = sum(part.tokens for part in self.parts)

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch number `index`: inputs x and targets y, both (B, T) int64."""
        rng = np.random.Generator(np.random.PCG64([self.seed, self.rank, index]))
        which = rng.choice(len(self.folders), size=self.batch_size, p=self.p)  # (B,)
        T = self.parts[0].context_length
        batch = np.empty((self.batch_size, T + 1), dtype=np.int64)  # (B, T + 1)
        for f, part in enumerate(self.parts):
            rows = np.flatnonzero(which == f)
            if rows.size:
                batch[rows] = part.windows(rng, rows.size)
        return inputs_and_targets(batch)


def check_mixture(weights: dict[str, float]) -> None:
    """One-line errors for a weight <= 0 and for folders with different tokenizers."""
    if not weights:
        raise UserError("train.data_mix is empty; name at least one data folder")
    for folder, weight in weights.items():
        if not weight > 0:
            raise UserError(f"train.data_mix: the weight of {folder!r} is {weight}; "
                            "weights must be > 0 (leave a folder out instead)")
    tokenizers = {}
    for folder in weights:
        meta = load_meta(folder)
        tokenizers.setdefault(file_sha256(Path(folder) / meta["tokenizer"]),
                              folder)
    if len(tokenizers) > 1:
        a, b = list(tokenizers.values())[:2]
        raise UserError(f"train.data_mix: {a} and {b} were prepared with different "
                        "tokenizers; prepare them with the same --tokenizer FILE")


def make_batches(data_dir: str, data_mix: dict[str, float] | None, split: str,
                 batch_size: int, context_length: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> Batches | MixtureBatches:
    """The batches a run trains on: its mixture if it has one, else its folder."""
    if data_mix:
        return MixtureBatches(data_mix, split, batch_size, context_length, seed,
                              rank, world_size)
    return Batches(data_dir, split, batch_size, context_length, seed, rank,
                   world_size)
