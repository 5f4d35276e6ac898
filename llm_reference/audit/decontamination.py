"""Decontamination: does any evaluation item occur in the training shards?

An evaluation score means little if the model saw the test during training. The usual
test (GPT-3, Llama) is n-gram overlap: an item is contaminated when one of its
n-token sequences (n = 13 here) also occurs in the training text.

The evaluation set is small and the training data large, so we index the small side:

1. Tokenize every evaluation item with the data folder's tokenizer and hash each of
   its n-grams to 64 bits (`ngram_hashes`): a polynomial over the token ids, then a
   bit mixer so that the top bits are uniform. The sorted hashes, and which item and
   offset each came from, are the whole index: memory grows with the evaluation set.
2. Stream every training shard once, memory-mapped, in chunks of a million tokens
   (`scan_shard`): hash every n-gram of the chunk the same way, look each up in a
   table of hash prefixes (a cheap first filter, most n-grams stop there), binary
   search the few that pass, and compare the tokens of every hit with the item's to
   rule out hash collisions. Pages already scanned are handed back to the kernel
   (`MADV_DONTNEED`), so memory does not grow with the shard size.

An item shorter than n tokens has no n-gram and cannot be checked; it is counted.
Shards are scanned one by one, so an n-gram split across two shards is not seen (a
contaminated item longer than n tokens still shows in its other n-grams).
"""

from __future__ import annotations

import json
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data import load_meta, load_tokenizer
from ..errors import UserError
from .registry import Finding, Outcome, Targets, check

BASE = np.uint64(0x9E3779B97F4A7C15)  # an odd 64-bit constant (2^64 / golden ratio)
CHUNK_TOKENS = 1 << 20  # tokens hashed at once: bounds the working memory


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every output bit depends on every input bit."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def ngram_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """The 64-bit hash of each n-token window: (L,) ids -> (L - n + 1,) uint64.

    h = sum_j (t[i + j] + 1) * BASE^(n - 1 - j) mod 2^64, computed as n vector
    multiply-adds over the whole array (uint64 arithmetic wraps, as wanted).
    """
    count = len(tokens) - n + 1
    if count <= 0:
        return np.zeros(0, np.uint64)
    ids = tokens.astype(np.uint64) + np.uint64(1)
    h = np.zeros(count, np.uint64)
    for j in range(n):
        h = h * BASE + ids[j:j + count]
    return _mix(h)


@dataclass
class EvalItem:
    text: str
    line: int  # where the item starts in its file (1-based)


def read_eval_items(path: Path) -> list[EvalItem]:
    """Evaluation items from a `.jsonl`/`.json` file or plain text (one per line).

    A JSON item is a string, or an object whose "text" field is used, or else all of
    its string fields joined by newlines (question, choices, answer …).
    """
    def text_of(value: object, where: str) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            if isinstance(value.get("text"), str):
                return value["text"]
            return "\n".join(v for v in value.values() if isinstance(v, str))
        raise UserError(f"{where}: an evaluation item must be a string or an object")

    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read --eval {path}: {e}") from None
    if path.suffix == ".json":
        try:
            values = json.loads(raw)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(values, list):
            raise UserError(f"{path}: expected a JSON list of evaluation items")
        return [EvalItem(text_of(v, f"{path} item {i}"), 1)
                for i, v in enumerate(values)]
    items = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                line = text_of(json.loads(line), f"{path}:{number}")
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{number}: not valid JSON ({e})") from None
        items.append(EvalItem(line, number))
    return items


class NgramIndex:
    """The hashed n-grams of the evaluation items, sorted for lookups."""

    def __init__(self, token_lists: list[list[int]], n: int):
        self.n = n
        per_item = [ngram_hashes(np.asarray(t, np.int64), n) for t in token_lists]
        counts = np.array([len(h) for h in per_item], np.int64)
        self.ngrams_per_item = counts  # (items,)
        hashes = np.concatenate(per_item) if per_item else np.zeros(0, np.uint64)
        item = np.repeat(np.arange(len(per_item)), counts)  # (entries,)
        offset = np.concatenate([np.arange(c) for c in counts]) if len(counts) \
            else np.zeros(0, np.int64)
        order = np.argsort(hashes, kind="stable")
        self.hashes, self.item, self.offset = hashes[order], item[order], offset[order]
        # every item's tokens end to end, and where each entry's n-gram starts in
        # them: enough to check hits exactly, at 8 bytes per token (not per n-gram)
        self.flat = np.concatenate([np.asarray(t, np.int64) for t in token_lists]) \
            if token_lists else np.zeros(0, np.int64)
        starts = np.cumsum([0] + [len(t) for t in token_lists])[:-1]
        self.start = starts[self.item] + self.offset if len(self.item) else self.item
        # a table of hash prefixes, ~16 slots per n-gram: most lookups stop here
        self.bits = int(min(28, max(16, np.ceil(np.log2(max(len(hashes), 1) * 16)))))
        self.table = np.zeros(1 << self.bits, bool)
        self.table[self.hashes >> np.uint64(64 - self.bits)] = True

    def lookup(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows of `tokens` that equal an indexed n-gram: (positions, entries).

        `entries` is the first index entry of each hit's hash; equal n-grams of
        several items are consecutive entries (see `items_of`).
        """
        h = ngram_hashes(tokens, self.n)
        if not len(self.hashes):  # every item was shorter than n tokens
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        candidates = np.flatnonzero(self.table[h >> np.uint64(64 - self.bits)])
        where = np.searchsorted(self.hashes, h[candidates])
        where = np.minimum(where, len(self.hashes) - 1)
        found = self.hashes[where] == h[candidates]
        positions, entries = candidates[found], where[found]
        window = tokens[positions[:, None] + np.arange(self.n)].astype(np.int64)
        exact = (window == self.ngram(entries)).all(axis=1)  # no hash collisions
        return positions[exact], entries[exact]

    def ngram(self, entries: np.ndarray | int) -> np.ndarray:
        """The tokens of entries' n-grams: (E,) -> (E, n), or () -> (n,)."""
        return self.flat[np.asarray(self.start[entries])[..., None] + np.arange(self.n)]

    def items_of(self, entry: int) -> np.ndarray:
        """The entries whose n-gram equals entry `entry`'s (same hash, same tokens)."""
        end = np.searchsorted(self.hashes, self.hashes[entry], side="right")
        candidates = np.arange(entry, end)
        return candidates[(self.ngram(candidates) == self.ngram(entry)).all(axis=1)]


def scan_shard(path: Path, dtype: np.dtype, index: NgramIndex,
               chunk_tokens: int = CHUNK_TOKENS) -> Iterator[tuple[int, int]]:
    """Yield (position in the shard, entry) of every hit, in one pass over the file."""
    if path.stat().st_size == 0:
        return
    n, itemsize = index.n, np.dtype(dtype).itemsize
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        mm.madvise(mmap.MADV_SEQUENTIAL)
        total, released = len(mm) // itemsize, 0
        for start in range(0, max(total - n + 1, 0), chunk_tokens):
            stop = min(start + chunk_tokens + n - 1, total)
            chunk = np.frombuffer(mm, dtype, stop - start, start * itemsize).copy()
            positions, entries = index.lookup(chunk)
            for position, entry in zip(positions.tolist(), entries.tolist()):
                yield start + position, entry
            done = min((start + chunk_tokens) * itemsize, len(mm))
            done = done // mmap.PAGESIZE * mmap.PAGESIZE
            if done > released:  # scanned pages: give them back to the kernel
                mm.madvise(mmap.MADV_DONTNEED, released, done - released)
                released = done


@dataclass
class Contamination:
    """One contaminated evaluation item, and where it first occurs."""

    item: int  # index in the evaluation file
    matched: int  # its distinct n-grams found in the training shards
    total: int  # its n-grams
    shard: str
    position: int  # token offset in that shard


def find_contamination(index: NgramIndex, shards: list[Path], dtype: np.dtype,
                       ) -> list[Contamination]:
    """Scan each shard once; report every item with at least one n-gram found."""
    seen = np.zeros(len(index.hashes), bool)  # entry found somewhere
    first: dict[int, tuple[int, int]] = {}  # item -> (shard number, position)
    for number, shard in enumerate(shards):
        for position, entry in scan_shard(shard, dtype, index):
            if seen[entry]:
                continue
            for same in index.items_of(entry):
                seen[same] = True
                first.setdefault(int(index.item[same]), (number, position))
    matched = np.bincount(index.item[seen], minlength=len(index.ngrams_per_item))
    return [Contamination(item, int(matched[item]), int(index.ngrams_per_item[item]),
                          shards[number].name, position)
            for item, (number, position) in sorted(first.items())]


@check("dataset.decontamination",
       verifies="no evaluation item shares an n-gram (default 13 tokens, --ngram) with "
                "the training shards, tokenized with the data folder's tokenizer",
       why="a model that trained on the test scores well on it without having learned "
           "the task: the evaluation would overstate what it can do",
       fix="drop the listed items from the evaluation set (or the documents that hold "
           "them from the training sources) and prepare again; --max-contaminated "
           "allows an agreed share of items",
       targets=(("data", "eval"),))
def decontamination(targets: Targets, on: str) -> Outcome:
    meta = load_meta(targets.data)
    tokenizer = load_tokenizer(targets.data)
    items = read_eval_items(targets.eval)
    if not items:
        raise UserError(f"--eval {targets.eval} holds no evaluation items")
    index = NgramIndex([tokenizer.encode(i.text) for i in items], targets.ngram)
    shards = [targets.data / s["file"] for s in meta["shards"]["train"]]
    found = find_contamination(index, shards, np.dtype(meta["dtype"]))
    checked = int((index.ngrams_per_item > 0).sum())
    short = len(items) - checked
    summary = (f"{len(found)} of {checked} item(s) contaminated ({targets.ngram}-grams"
               f", {meta['train_tokens']:,} training tokens)"
               + (f"; {short} item(s) shorter than {targets.ngram} tokens unchecked"
                  if short else ""))
    if checked and len(found) / checked <= targets.max_contaminated:
        return Outcome(summary)
    return Outcome(summary, [
        Finding(f"eval item {c.item} shares {c.matched}/{c.total} "
                f"{targets.ngram}-grams with the training data, first at {c.shard} "
                f"token {c.position:,}",
                targets.eval, items[c.item].line) for c in found])
