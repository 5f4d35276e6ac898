"""Feeding the device: the next micro-batch is read while the current one computes.

`Batches.get` cuts windows out of memory-mapped shards on the CPU. Done in line, a
GPU would sit idle at every micro-batch while the CPU reads and copies. The
`Prefetcher` reads micro-batch i + 1 in a background thread while the device works
on i, into pinned (page-locked) memory when the device is a GPU: a copy from pinned
memory runs asynchronously (`non_blocking=True`), queued behind the kernels already
launched instead of stalling the CPU until it is done.

Batches are addressed by index, so reading ahead changes nothing in what is trained:
when the trainer asks for another index than the one read ahead (after a rollback
or a resume), that one is dropped. Every batch's token ids are checked against the
data's vocabulary on the way: an id the embedding has no row for would otherwise be
an IndexError on the CPU and, on a GPU, a device-side assert that kills the process.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from .errors import UserError


class Prefetcher:
    """Micro-batches on `device`, one read ahead; ids checked against `vocab_size`
    (`source` names the data in the error)."""

    def __init__(self, device: torch.device, vocab_size: int, source: str) -> None:
        self.device, self.vocab_size, self.source = device, vocab_size, source
        self.pin = device.type == "cuda"
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self.ahead: tuple[Any, int, Future] | None = None  # (batches, index, read)

    def get(self, batches: Any, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Micro-batch `index` of `batches` (anything with `.get(i) -> (x, y)`) on
        the device: inputs and targets, both (B, T) int64."""
        if self.ahead is not None and self.ahead[:2] == (batches, index):
            future = self.ahead[2]
        else:  # nothing read ahead for this index: read it now
            future = self.pool.submit(self.read, batches, index)
        self.ahead = (batches, index + 1, self.pool.submit(self.read, batches,
                                                          index + 1))
        x, y = future.result()
        return (x.to(self.device, non_blocking=self.pin),
                y.to(self.device, non_blocking=self.pin))

    def read(self, batches: Any, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """In the background thread: read, check and pin one micro-batch."""
        x, y = batches.get(index)  # (B, T), (B, T) on the CPU
        top = int(torch.maximum(x.max(), y.max()))
        if top >= self.vocab_size:
            raise UserError(
                f"{self.source}: a training batch holds token id {top}, but "
                f"meta.json gives a vocabulary of {self.vocab_size}; the shards and "
                "meta.json disagree: run prepare again")
        if self.pin:
            return x.pin_memory(), y.pin_memory()
        return x, y
