"""Data: from raw sources to memory-mapped token shards, and batches drawn from them.

`prepare` runs one pipeline, each stage a small function below:

    read      sources -> documents, capped at --max-bytes          (read_documents)
    clean     Unicode NFC, drop empty, exact and near duplicates,
              replace emails, public IPs, phones, keys by [EMAIL]…  (cleaning.clean)
    split     each document to train or val, by a hash             (split_documents)
    tokenize  train a BPE tokenizer on train, encode in parallel   (tokenize_to_shards)
    shard     write train_000.bin, …, val_000.bin, then meta.json  (write_shards)

A prepared folder holds the shards (raw little-endian uint16, or uint32 for a
vocabulary above 65536), `tokenizer.json`, `manifest.json` (provenance) and, written
last, `meta.json`. A folder without `meta.json` is incomplete, whatever else it holds.

`Batches` then samples random windows of `context_length + 1` tokens from the shards,
reproducibly: batch `index` depends only on `(seed, rank, index)`, so a resumed run
that knows its step sees exactly the batches it would have seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from . import compliance
from .atomic import atomic_open, write_json
from .cleaning import clean
from .compliance import SourceRecord
from .errors import UserError
from .sources import Document, Source, file_sha256, open_sources
from .tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

if TYPE_CHECKING:
    import torch

EOT = "<|endoftext|>"
SHARD_NAME = re.compile(r"(train|val)_\d{3}\.bin")

# --- read -------------------------------------------------------------------------


def read_documents(sources: list[Source], records: dict[str, SourceRecord],
                   max_bytes: int | None = None) -> Iterator[Document]:
    """Yield every source's documents in order; with `max_bytes`, only those that fit.

    Under a cap, each document that still fits is taken and the others are passed
    over, so the sample spans the whole corpus rather than its first few files.
    """
    taken = 0
    for source in sources:
        record, seen = records[source.id], 0
        for doc in source.documents():
            seen += 1
            size = len(doc.text.encode("utf-8"))
            if max_bytes is not None and taken + size > max_bytes:
                continue
            taken += size
            record.add(doc.path, doc.text)
            yield doc
        record.skipped_files = list(source.skipped)
        if not seen:
            raise UserError(f"source {source.id} holds no text documents; "
                            "check that it points at UTF-8 text files")


# --- split ------------------------------------------------------------------------


def split_documents(docs: list[Document], val_fraction: float,
                    seed: int) -> tuple[list[Document], list[Document]]:
    """Send each document to val with probability `val_fraction`, decided by a hash.

    A hash of (seed, text) instead of a shuffle: a document's split does not depend
    on the other documents, so adding a source never moves a document from val into
    train. Whole documents go one way, so val text is never seen in training. If the
    hash sends none to val, the document with the smallest hash goes.
    """
    def unit(doc: Document) -> float:  # uniform in [0, 1)
        digest = hashlib.sha256(f"{seed}\0{doc.text}".encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    keys = [unit(doc) for doc in docs]
    in_val = [key < val_fraction for key in keys]
    if val_fraction > 0 and not any(in_val) and len(docs) > 1:
        in_val[keys.index(min(keys))] = True
    train = [doc for doc, v in zip(docs, in_val) if not v]
    val = [doc for doc, v in zip(docs, in_val) if v]
    if val_fraction > 0 and not (train and val):
        raise UserError(f"{len(docs)} document(s) left after cleaning: too few to "
                        "split into train and val; add text or pass --val-fraction 0")
    return train, val


# --- tokenize ---------------------------------------------------------------------

_worker_tokenizer: Tokenizer | None = None  # each encoding process loads its own


def _load_tokenizer(path: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = Tokenizer.load(path)


def _encode_chunk(texts: list[str]) -> np.ndarray:
    """Token ids of some documents, each preceded by <|endoftext|>."""
    eot = _worker_tokenizer.special_tokens[EOT]
    ids: list[int] = []
    for text in texts:
        ids.append(eot)
        ids.extend(_worker_tokenizer.encode(text))  # special tokens in text: plain text
    return np.array(ids, dtype=np.uint32)


def _chunks(texts: list[str], chunk_bytes: int) -> Iterator[list[str]]:
    chunk, size = [], 0
    for text in texts:
        chunk.append(text)
        size += len(text)
        if size >= chunk_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


@contextlib.contextmanager
def encoder_pool(tokenizer_file: Path, workers: int) -> Iterator[Callable]:
    """An ordered `map` that runs `_encode_chunk` in `workers` processes.

    Each worker loads the tokenizer once (`initializer`). `imap` hands chunks to
    free workers but returns results in input order, so the output is the same for
    any number of workers. "spawn" starts clean processes on every platform.
    """
    if workers <= 1:
        _load_tokenizer(str(tokenizer_file))
        yield map
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_load_tokenizer,
                      initargs=(str(tokenizer_file),)) as pool:
        yield pool.imap


def encode_documents(texts: list[str], imap: Callable = map,
                     chunk_bytes: int = 1 << 18) -> Iterator[np.ndarray]:
    """Yield the token ids of `texts`, in order, in chunks of about `chunk_bytes`."""
    chunks = list(_chunks(texts, chunk_bytes))
    with tqdm(total=sum(map(len, texts)), unit="B", unit_scale=True, desc="encode",
              file=sys.stderr, disable=None, leave=False) as bar:
        for chunk, ids in zip(chunks, imap(_encode_chunk, chunks)):
            bar.update(sum(map(len, chunk)))
            yield ids


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer that holds every token id, little-endian."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def write_shards(out_dir: Path, split: str, chunks: Iterable[np.ndarray],
                 dtype: np.dtype, shard_tokens: int) -> list[dict]:
    """Stream token arrays into `{split}_000.bin`, `{split}_001.bin`, …

    Each shard holds at most `shard_tokens` tokens, as raw integers of `dtype`, so it
    can be memory-mapped and sliced without reading it. `atomic_open` writes each one
    under a temporary name and renames it only when complete.
    """
    chunks = (chunk for chunk in chunks if chunk.size)
    pending = next(chunks, None)  # tokens not yet written
    shards: list[dict] = []
    while pending is not None:
        name, count = f"{split}_{len(shards):03d}.bin", 0
        with atomic_open(out_dir / name, "wb") as f:
            while pending is not None and count < shard_tokens:
                room = shard_tokens - count
                f.write(pending[:room].astype(dtype).tobytes())
                count += min(room, pending.size)
                pending = pending[room:] if pending.size > room else next(chunks, None)
        shards.append({"file": name, "tokens": count})
    return shards


# --- prepare ----------------------------------------------------------------------


@dataclass
class PrepareSettings:
    """Everything that decides the output of `prepare` (recorded in the manifest)."""

    sources: tuple[str, ...] = ("stdlib",)
    licenses: tuple[str, ...] = ()
    sha256s: tuple[str, ...] = ()
    stdlib_tests: bool = False
    vocab_size: int = 8192
    pattern: str = "gpt4"
    val_fraction: float = 0.05
    max_bytes: int | None = None
    near_dup_threshold: float | None = 0.85  # None: keep near duplicates
    redact: bool = True
    seed: int = 1337
    shard_tokens: int = 100_000_000

    def check(self) -> None:
        """Reject bad values before any work is done."""
        smallest = 256 + len(DEFAULT_SPECIAL_TOKENS)
        if self.vocab_size < smallest:
            raise UserError(f"--vocab-size {self.vocab_size} is too small: it must "
                            f"hold 256 byte tokens + {len(DEFAULT_SPECIAL_TOKENS)} "
                            f"special tokens (>= {smallest})")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"--val-fraction {self.val_fraction} must be in [0, 1)")
        if self.near_dup_threshold is not None and not 0 < self.near_dup_threshold <= 1:
            raise UserError(f"--near-dup-threshold {self.near_dup_threshold} must be "
                            "in (0, 1]")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise UserError(f"--max-bytes {self.max_bytes} must be positive")
        if self.shard_tokens <= 0:
            raise UserError(f"--shard-tokens {self.shard_tokens} must be positive")
        if self.seed < 0:
            raise UserError(f"--seed {self.seed} must be >= 0")
        if not self.sources:
            raise UserError("no --source given; pass 'stdlib', a path or a URL")


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise UserError(f"cannot write to output folder {out}: {e.strerror}; "
                        "choose a writable --out") from None


def tokenize_to_shards(out: Path, tokenizer: Tokenizer,
                       splits: dict[str, list[Document]], shard_tokens: int,
                       workers: int) -> dict[str, list[dict]]:
    """Save the tokenizer, encode each split into shards, delete stale shards."""
    tokenizer.save(out / "tokenizer.json")
    dtype = token_dtype(tokenizer.vocab_size)
    shards = {}
    with encoder_pool(out / "tokenizer.json", workers) as imap:
        for split, docs in splits.items():
            tokens = encode_documents([d.text for d in docs], imap)
            shards[split] = write_shards(out, split, tokens, dtype, shard_tokens)
    written = {s["file"] for split_shards in shards.values() for s in split_shards}
    for path in out.iterdir():  # shards left by an earlier, larger prepare
        if SHARD_NAME.fullmatch(path.name) and path.name not in written:
            path.unlink()
    return shards


def prepare(settings: PrepareSettings, out: Path, workers: int = 2,
            cache_dir: Path | None = None, verbose: bool = False) -> dict:
    """Run the whole pipeline into `out`; return meta.json, source records, timings."""
    settings.check()
    start = time.perf_counter()
    sources = open_sources(list(settings.sources), list(settings.sha256s),
                           list(settings.licenses), settings.stdlib_tests, cache_dir)
    _check_writable(out)
    records = {s.id: SourceRecord(s.id, s.kind, s.license, sha256=s.sha256)
               for s in sources}
    documents = read_documents(sources, records, settings.max_bytes)
    docs = list(clean(tqdm(documents, desc="read+clean", unit="doc", file=sys.stderr,
                           disable=None, leave=False), records,
                      settings.near_dup_threshold, settings.redact))
    if not docs:
        raise UserError("no text left after cleaning: every document was empty or "
                        "a duplicate; check --source (and --max-bytes)")
    train, val = split_documents(docs, settings.val_fraction, settings.seed)
    cleaned = time.perf_counter()

    tokenizer = Tokenizer.train([d.text for d in train], settings.vocab_size,
                                pattern=settings.pattern, verbose=verbose)
    trained = time.perf_counter()
    (out / "meta.json").unlink(missing_ok=True)  # the folder changes: incomplete now
    shards = tokenize_to_shards(out, tokenizer, {"train": train, "val": val},
                                settings.shard_tokens, workers)
    outputs = {name: file_sha256(out / name) for name in
               ["tokenizer.json", *(s["file"] for v in shards.values() for s in v)]}
    write_json(out / "manifest.json", compliance.build_manifest(
        list(records.values()), asdict(settings), outputs))
    meta = {
        "format": "llm-reference-data/1",
        "vocab_size": tokenizer.vocab_size,
        "dtype": token_dtype(tokenizer.vocab_size).name,
        "eot_id": tokenizer.special_tokens[EOT],
        "special_tokens": tokenizer.special_tokens,
        "pattern": settings.pattern,
        "tokenizer": "tokenizer.json",
        "manifest": "manifest.json",
        "documents": {"train": len(train), "val": len(val)},
        "train_tokens": sum(s["tokens"] for s in shards["train"]),
        "val_tokens": sum(s["tokens"] for s in shards["val"]),
        "shards": shards,
    }
    write_json(out / "meta.json", meta)  # last: its presence means "complete"
    end = time.perf_counter()
    return {"meta": meta, "records": list(records.values()), "seconds": {
        "read_clean": cleaned - start, "tokenizer": trained - cleaned,
        "encode_write": end - trained, "total": end - start}}


# --- load -------------------------------------------------------------------------


def load_meta(data_dir: str | Path) -> dict:
    """Read meta.json and check every shard against it (exists, right size)."""
    data_dir = Path(data_dir)
    path = data_dir / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found: {data_dir} is not a prepared data folder "
                        "(or its prepare was interrupted); run `python -m "
                        f"llm_reference prepare --out {data_dir}`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt ({e}); run prepare again") from None
    missing = {"vocab_size", "dtype", "shards", "tokenizer"} - meta.keys()
    if missing:
        raise UserError(f"{path} lacks {', '.join(sorted(missing))}; run prepare again")
    if meta["dtype"] not in ("uint16", "uint32"):
        raise UserError(f"{path}: dtype {meta['dtype']!r} must be uint16 or uint32")
    itemsize = np.dtype(meta["dtype"]).itemsize
    for split in ("train", "val"):
        for shard in meta["shards"][split]:
            file = data_dir / shard["file"]
            if not file.is_file():
                raise UserError(f"shard {file} listed in meta.json is missing; "
                                "run prepare again")
            size = file.stat().st_size
            if size % itemsize or size != shard["tokens"] * itemsize:
                raise UserError(
                    f"shard {file} is truncated or corrupt: {size} bytes, expected "
                    f"{shard['tokens']} {meta['dtype']} tokens = "
                    f"{shard['tokens'] * itemsize} bytes; run prepare again")
    return meta


def load_tokenizer(data_dir: str | Path) -> Tokenizer:
    """The tokenizer that encoded a prepared folder's shards."""
    meta = load_meta(data_dir)
    return Tokenizer.load(Path(data_dir) / meta["tokenizer"])


class Batches:
    """Random training windows from memory-mapped shards, reproducible by index.

    A window is `context_length + 1` consecutive tokens from one shard; its first T
    tokens are the input `x` and its last T the targets `y` (each token's successor).
    Batch `index` is drawn from a PCG64 generator seeded with `(seed, rank, index)`:
    nothing depends on earlier calls, so resuming at step k is just `get(k)`, and each
    rank of a distributed run draws its own windows.
    """

    def __init__(self, data_dir: str | Path, split: str, batch_size: int,
                 context_length: int, seed: int, rank: int = 0, world_size: int = 1):
        if split not in ("train", "val"):
            raise UserError(f"split {split!r} must be 'train' or 'val'")
        if batch_size < 1 or context_length < 1 or seed < 0:
            raise UserError(f"batch_size {batch_size} and context_length "
                            f"{context_length} must be >= 1, seed {seed} >= 0")
        if not 0 <= rank < world_size:
            raise UserError(f"rank {rank} must be in [0, world_size={world_size})")
        meta = load_meta(data_dir)
        self.batch_size, self.context_length = batch_size, context_length
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.tokens = meta[f"{split}_tokens"]
        dtype = np.dtype(meta["dtype"]).newbyteorder("<")
        self.shards = [np.memmap(Path(data_dir) / s["file"], dtype=dtype, mode="r")
                       for s in meta["shards"][split] if s["tokens"] > context_length]
        if not self.shards:
            raise UserError(
                f"the {split} split of {data_dir} has {self.tokens} tokens, and no "
                f"shard holds context_length + 1 = {context_length + 1}; use a "
                "shorter context_length or prepare more data")
        # Window w starts in shard s when ends[s - 1] <= w < ends[s].
        self.ends = np.cumsum([len(s) - context_length for s in self.shards])

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch number `index`: inputs x and targets y, both (B, T) int64."""
        import torch  # here, not at the top: `prepare` and its workers start faster
        rng = np.random.Generator(np.random.PCG64([self.seed, self.rank, index]))
        windows = rng.integers(0, self.ends[-1], size=self.batch_size)  # (B,)
        shard = np.searchsorted(self.ends, windows, side="right")  # (B,)
        start = windows - np.concatenate([[0], self.ends])[shard]  # (B,)
        T = self.context_length
        batch = np.stack([self.shards[s][i:i + T + 1] for s, i in zip(shard, start)])
        batch = batch.astype(np.int64)  # (B, T + 1)
        x = torch.from_numpy(np.ascontiguousarray(batch[:, :-1]))  # (B, T)
        y = torch.from_numpy(np.ascontiguousarray(batch[:, 1:]))  # (B, T)
        return x, y
