"""Encoding documents to token ids in worker processes, in order, in bounded memory.

Documents travel in chunks of about `CHUNK_BYTES` of text. A chunk becomes one array
of ids, each document's ids preceded by `<|endoftext|>`, and the length of each. Two
encoders give the same ids (tests/test_data.py checks it):

- "python": our `Tokenizer.encode`, the code the book teaches; the default.
- "hf": Hugging Face `tokenizers` (Rust) loading the same `tokenizer.json`, many
  times faster, for corpora of gigabytes.

`ordered_map` keeps at most `window` chunks in flight, so however large the corpus,
only a few chunks of text and ids are in memory at once, and hands results back in
input order, so the output does not depend on the number of workers.
"""

from __future__ import annotations

import collections
import multiprocessing
from typing import Any, Callable, Iterable, Iterator, Literal, TypeVar

import numpy as np

from .errors import UserError
from .tokenizer import Tokenizer

EOT = "<|endoftext|>"
CHUNK_BYTES = 1 << 18  # text per unit of work: large enough to amortize the IPC
Encoder = Literal["python", "hf"]
K = TypeVar("K")
T = TypeVar("T")

_encode: Callable[[list[str]], list[list[int]]] | None = None  # one per process
_eot: int = 0


def load_encoder(tokenizer_file: str, encoder: Encoder) -> None:
    """Set this process's encoder (a pool's `initializer` runs it in every worker)."""
    global _encode, _eot
    ours = Tokenizer.load(tokenizer_file)
    _eot = ours.special_tokens[EOT]
    if encoder == "python":
        _encode = lambda texts: [ours.encode(text) for text in texts]  # noqa: E731
        return
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise UserError("--encoder hf needs the `tokenizers` package: "
                        "pip install tokenizers (or use --encoder python)") from None
    fast = HFTokenizer.from_file(tokenizer_file)
    fast.encode_special_tokens = True  # "<|endoftext|>" in a text is plain text
    _encode = lambda texts: [e.ids for e in  # noqa: E731
                             fast.encode_batch(texts, add_special_tokens=False)]


def encode_chunk(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of some documents, each preceded by <|endoftext|>, and the number
    of ids of each document (so that the caller can route them)."""
    encoded = _encode(texts)
    lengths = np.array([1 + len(doc_ids) for doc_ids in encoded], dtype=np.int64)
    ids = np.empty(int(lengths.sum()), dtype=np.uint32)
    at = 0
    for doc_ids, length in zip(encoded, lengths):
        ids[at] = _eot
        ids[at + 1:at + length] = doc_ids
        at += length
    return ids, lengths


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


def ordered_map(function: Callable, items: Iterable[tuple[K, list[str]]],
                pool, window: int) -> Iterator[tuple[K, Any]]:
    """(key, function(texts)) for each item, in order, at most `window` in flight."""
    if pool is None:
        for key, texts in items:
            yield key, function(texts)
        return
    flying: collections.deque = collections.deque()
    for key, texts in items:
        flying.append((key, pool.apply_async(function, (texts,))))
        if len(flying) >= window:
            key, result = flying.popleft()
            yield key, result.get()
    while flying:
        key, result = flying.popleft()
        yield key, result.get()


def encoder_pool(tokenizer_file: str, encoder: Encoder, workers: int):
    """A pool of `workers` processes with the encoder loaded (None: encode here).

    "spawn" starts clean processes on every platform; the caller closes the pool.
    """
    if workers <= 1:
        load_encoder(tokenizer_file, encoder)
        return None
    context = multiprocessing.get_context("spawn")
    return context.Pool(workers, initializer=load_encoder,
                        initargs=(tokenizer_file, encoder))
