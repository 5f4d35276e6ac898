"""A pool of KV cache slots, preallocated once, shared by the sequences a server runs.

Allocating a cache per request costs time on every request and, worse, lets the
server run out of memory at a bad moment. A server instead sets aside, once, room
for `n_slots` sequences of up to `context_length` tokens each: one `KVCache` with
a batch of `n_slots` rows. A request takes a free row (a slot) when it is admitted
and gives it back the moment it ends or its client leaves. Free slots are the free
cache memory: admission control is "is a slot free?".

A fixed slot reserves a whole context for every sequence, even a short one; paged
attention (vLLM) hands out small blocks on demand instead, which fits more
sequences in the same memory at the price of a block table per sequence. Slots
keep the code short and, with `GPT.decode_step`, let every decoding sequence sit at
its own position.
"""

from __future__ import annotations

import torch

from .model import GPT, KVCache


class SlotCache(KVCache):
    """One slot of the pool seen as a batch-1 `KVCache` (views: writes land in the
    pool), so a prompt can be prefilled by the ordinary `GPT.forward`."""

    def __init__(self, pool: KVCache, slot: int, pos: int):
        self.max_len = pool.max_len
        self.k = [k[slot:slot + 1] for k in pool.k]  # each (1, K, max_len, D)
        self.v = [v[slot:slot + 1] for v in pool.v]
        self.pos = pos


class KVPool:
    """`n_slots` preallocated cache rows of `context_length` tokens and a free list."""

    def __init__(self, model: GPT, n_slots: int):
        weight = model.tok_emb.weight
        self.cache = KVCache(model.config, batch_size=n_slots, device=weight.device,
                             dtype=weight.dtype)
        self.config = model.config
        self.free = list(range(n_slots - 1, -1, -1))  # pop() takes slot 0 first
        self.n_slots = n_slots

    def take(self) -> int | None:
        """A free slot, or None if all are taken."""
        return self.free.pop() if self.free else None

    def give_back(self, slot: int) -> None:
        self.free.append(slot)

    def view(self, slot: int, pos: int) -> SlotCache:
        """The slot as a cache holding `pos` tokens."""
        return SlotCache(self.cache, slot, pos)

    def scratch(self, batch_size: int, length: int) -> KVCache:
        """A small empty cache to prefill `batch_size` prompts of up to `length`
        tokens in one model call; `store` then copies it into their slots."""
        like = self.cache.k[0]
        return KVCache(self.config, batch_size, max_len=length, device=like.device,
                       dtype=like.dtype)

    def store(self, slots: list[int], scratch: KVCache) -> None:
        """Copy row i of `scratch` into slot slots[i], from position 0."""
        rows = torch.tensor(slots, device=self.cache.k[0].device)
        T = scratch.max_len
        for pool, new in zip(self.cache.k + self.cache.v, scratch.k + scratch.v):
            pool[rows, :, :T] = new  # (B, K, T, D)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.cache.k + self.cache.v)
