"""The work of `prepare`'s worker processes: clean and encode batches of documents,
in order, in bounded memory.

Documents travel in batches of about `CHUNK_BYTES` of text. `work` does to a batch
all that needs no other document: cleaning's look at each one (`cleaning.inspect`:
normalize, exact-duplicate digest, quality filters, MinHash signature, PII) and the
encoding of those that survive into one array of ids, each document's ids preceded
by `<|endoftext|>`, with the number of ids of each. The main process then decides,
in document order, what needs all documents (duplicates) and writes the shards. Two
encoders give the same ids (tests/test_data.py checks it):

- "python": our `Tokenizer.encode`, the code the book teaches; the default.
- "hf": Hugging Face `tokenizers` (Rust) loading the same `tokenizer.json`; it
  uses every core from one process (`benchmarks/data.py` compares the two).

`ordered_map` keeps at most a few batches per process in flight, so however large
the corpus, only a few batches of text and ids are in memory at once, and hands
results back in input order, so the output does not depend on the number of
workers. The main process works too: it runs a batch itself whenever it would
otherwise wait for the pool.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal, TypeVar

import numpy as np

from .cleaning import Inspection, inspect
from .errors import UserError
from .tokenizer import Tokenizer

EOT = "<|endoftext|>"
CHUNK_BYTES = 1 << 18  # text per unit of work: large enough to amortize the IPC
Encoder = Literal["python", "hf"]
K = TypeVar("K")
T = TypeVar("T")

_encoders: dict[tuple[str, str], tuple[Callable[[list[str]], list[list[int]]], int]]
_encoders = {}  # (tokenizer file, encoder) -> (encode, id of EOT), per process


@dataclass(frozen=True)
class Job:
    """What a worker does to each batch of documents: clean (`cleaning.inspect`,
    with these switches), then encode what survived with `tokenizer` (a
    tokenizer.json), or only one of the two."""

    clean: bool = False
    near_dup: bool = True
    redact: bool = True
    quality: bool = False
    tokenizer: str | None = None
    encoder: Encoder = "python"


@dataclass
class Batch:
    """A worker's answer: one inspection per document (if cleaning), and the ids
    of the documents it encoded, each preceded by <|endoftext|>, with the number
    of ids of each document (0: dropped by cleaning, not encoded)."""

    inspections: list[Inspection] | None
    ids: np.ndarray  # (total ids,) uint32
    lengths: np.ndarray  # (documents,) int64


def work(texts: list[str], job: Job) -> Batch:
    """Everything done to one batch of documents that needs no other batch: the
    unit of work of `prepare`'s worker processes."""
    inspections = None
    if job.clean:
        inspections = [inspect(text, job.near_dup, job.redact, job.quality)
                       for text in texts]
        texts = [s.text if s.failure is None else None for s in inspections]
    if job.tokenizer is None:
        return Batch(inspections, np.empty(0, np.uint32),
                     np.zeros(len(texts), np.int64))
    ids, lengths = encode_chunk(texts, job.tokenizer, job.encoder)
    return Batch(inspections, ids, lengths)


def encode_chunk(texts: list[str | None], tokenizer_file: str, encoder: Encoder
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of some documents, each preceded by <|endoftext|>, and the number
    of ids of each document (so that the caller can route them); a None in `texts`
    is skipped (0 ids)."""
    encode, eot = _encoder(tokenizer_file, encoder)
    encoded = iter(encode([text for text in texts if text is not None]))
    per_text = [[] if text is None else next(encoded) for text in texts]
    lengths = np.array([0 if text is None else 1 + len(doc_ids)
                        for text, doc_ids in zip(texts, per_text)], dtype=np.int64)
    ids = np.empty(int(lengths.sum()), dtype=np.uint32)
    at = 0
    for doc_ids, length in zip(per_text, lengths):
        if length:
            ids[at] = eot
            ids[at + 1:at + length] = doc_ids
            at += length
    return ids, lengths


def _encoder(tokenizer_file: str, encoder: Encoder
             ) -> tuple[Callable[[list[str]], list[list[int]]], int]:
    """This process's encoder for `tokenizer_file`, loaded on first use."""
    key = (tokenizer_file, encoder)
    if key not in _encoders:
        _encoders[key] = load_encoder(tokenizer_file, encoder)
    return _encoders[key]


def load_encoder(tokenizer_file: str, encoder: Encoder
                 ) -> tuple[Callable[[list[str]], list[list[int]]], int]:
    """A function from texts to their ids, and the id of <|endoftext|>."""
    ours = Tokenizer.load(tokenizer_file)
    eot = ours.special_tokens[EOT]
    if encoder == "python":
        return (lambda texts: [ours.encode(text) for text in texts]), eot
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise UserError("--encoder hf needs the `tokenizers` package: "
                        "pip install tokenizers (or use --encoder python)") from None
    fast = HFTokenizer.from_file(tokenizer_file)
    fast.encode_special_tokens = True  # "<|endoftext|>" in a text is plain text
    return (lambda texts: [e.ids for e in fast.encode_batch_fast(  # no offsets
        texts, add_special_tokens=False)]), eot


def chunks(items: Iterable[T], size: Callable[[T], int],
           chunk_bytes: int = CHUNK_BYTES) -> Iterator[list[T]]:
    """Group items, in order, into lists of about `chunk_bytes` (by `size`)."""
    chunk, total = [], 0
    for item in items:
        chunk.append(item)
        total += size(item)
        if total >= chunk_bytes:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


class Done:
    """`function(*args)` run in this process, queued beside the pool's results: its
    value, or the exception it raised, raised in its turn (as the pool's are)."""

    def __init__(self, function: Callable, args: tuple):
        self.value, self.error = None, None
        try:
            self.value = function(*args)
        except Exception as error:
            self.error = error

    def ready(self) -> bool:
        return True

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def ordered_map(function: Callable, items: Iterable[tuple[K, tuple]], pool,
                window: int) -> Iterator[tuple[K, Any]]:
    """(key, function(*args)) for each (key, args), in input order.

    `pool` holds up to `window` items at a time. This process does not wait idle
    for the oldest of them: while it is not done, it takes the next item and runs
    it here, as long as at most `4 * window` results are queued (memory stays
    bounded). So with a pool of N - 1 processes, N processes share the work,
    however the items' costs vary. Without a pool, every item runs here, one at a
    time.
    """
    items = iter(items)
    queued: collections.deque = collections.deque()  # (key, result), in order
    in_pool = 0
    while True:
        while pool is not None and in_pool < window and (
                item := next(items, None)) is not None:
            queued.append((item[0], pool.apply_async(function, item[1])))
            in_pool += 1
        waiting = not queued or not queued[0][1].ready()
        if waiting and len(queued) <= 4 * window and (
                item := next(items, None)) is not None:
            queued.append((item[0], Done(function, item[1])))
            continue
        if not queued:
            return
        key, result = queued.popleft()
        in_pool -= not isinstance(result, Done)
        yield key, result.get()


class Workers:
    """`count` processes that share `work`: this one and a pool of `count` - 1.

    "spawn" starts clean processes on every platform. Each process of the pool
    gives `tokenizers` (Rust, multi-threaded) its share of the cores, so that they
    do not fight over them. `map` keeps two items per pool process in flight, so
    none waits for work, and few, so that at the end this process does not wait
    long for the last of them.
    """

    def __init__(self, count: int):
        self.count, self.pool = count, None
        if count > 1:
            threads = str(max(1, (os.cpu_count() or 1) // count))
            self.pool = multiprocessing.get_context("spawn").Pool(
                count - 1, initializer=_share_cores, initargs=(threads,))

    def map(self, function: Callable, items: Iterable[tuple[K, tuple]]
            ) -> Iterator[tuple[K, Any]]:
        """(key, function(*args)) for each (key, args), in order (`ordered_map`)."""
        return ordered_map(function, items, self.pool, window=2 * (self.count - 1))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()


def _share_cores(threads: str) -> None:
    """In a worker: `tokenizers` may use `threads` threads (unless set already)."""
    os.environ.setdefault("RAYON_NUM_THREADS", threads)
