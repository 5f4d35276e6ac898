"""Data: from raw sources to memory-mapped token shards, and batches drawn from them.

`prepare` runs one streaming pipeline, each stage a small function:

    read      sources -> documents (readers.py), --max-bytes, --slice (read_documents)
    clean     Unicode NFC, drop empty, exact and near duplicates,
              low quality (filters.py); scrub emails, IPs, keys  (cleaned_batches)
    split     each document to train or val, by a hash             (in_val)
    tokenize  train a BPE tokenizer on a sample of train           (Tokenizer.train)
    encode    batches of documents in worker processes             (encoding.py)
    shard     fixed-size train_000.bin, …, val_000.bin, resumable  (shards.ShardWriter)
    finish    manifest.json, then meta.json                        (prepare)

Cleaning and encoding look at one document at a time, so they run in the worker
processes (`encoding.work`); deciding duplicates needs every earlier document, so
it runs in this process, in document order (`cleaning.Cleaner`): the output is the
same for any `--workers`. `--workers 1` runs everything here, with no pool.

A prepared folder holds the shards (raw little-endian uint16, or uint32 for a
vocabulary above 65536), `tokenizer.json`, `manifest.json` (provenance) and, written
last, `meta.json`. A folder without `meta.json` is incomplete, whatever else it holds.

`Batches` then samples random windows of `context_length + 1` tokens from the shards,
reproducibly: batch `index` depends only on `(seed, rank, index)`, so a resumed run
that knows its step sees exactly the batches it would have seen.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np

from . import compliance, encoding, recipes, shards, slices
from .atomic import write_json
from .cleaning import Cleaner, normalize
from .compliance import SourceRecord
from .encoding import EOT, Encoder
from .errors import UserError
from .filters import QualityReport
from .progress import Progress
from .sources import Document, Source, file_sha256, open_sources
from .tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

if TYPE_CHECKING:
    import torch

# Text the tokenizer learns from: enough for stable merges at a 50k vocabulary, and
# it bounds the memory of training (a word-count table) on corpora of any size.
TOKENIZER_SAMPLE_BYTES = 200_000_000
# compressed or columnar files: their size on disk is not the bytes of text read
PACKED_SUFFIXES = (".gz", ".zst", ".parquet", ".arrow")
# Four times the largest vocabularies in use (256k): a bigger one is a typo.
MAX_VOCAB_SIZE = 1 << 20

# --- read -------------------------------------------------------------------------


def read_documents(sources: list[Source],
                   records: dict[str, SourceRecord] | None = None,
                   max_bytes: int | None = None,
                   part: tuple[int, int] | None = None) -> Iterator[Document]:
    """Yield every source's documents in order; with `max_bytes`, only those that fit.

    Under a cap, each document that still fits is taken and the others are passed
    over, so the sample spans the whole corpus rather than its first few files.
    With `part` = (I, N), only the documents of slice I of N (`slices.in_slice`).
    With `records`, each document is counted in its source's record as it is read
    (`prepare` counts them when it takes their results, which it may read ahead of).
    """
    taken = 0
    for source in sources:
        seen = 0
        for doc in source.documents():
            seen += 1
            if part is not None and not slices.in_slice(normalize(doc.text), part):
                continue
            size = len(doc.text.encode("utf-8"))
            if max_bytes is not None and taken + size > max_bytes:
                continue
            taken += size
            if records is not None:
                records[source.id].add(doc.path, doc.text)
            yield doc
        if records is not None:
            records[source.id].skipped_files = list(source.skipped)
        if not seen:
            raise UserError(f"source {source.id} holds no text documents; "
                            "check that it points at UTF-8 text files")


# --- split ------------------------------------------------------------------------


def in_val(doc: Document, val_fraction: float, seed: int) -> bool:
    """Whether `doc` goes to val: a hash of (seed, text), uniform in [0, 1), below
    `val_fraction`. It does not depend on any other document, so adding a source
    never moves a document from val into train, and a stream can be split as it
    flows."""
    return _unit(doc, seed) < val_fraction


def _unit(doc: Document, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\0{doc.text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_documents(docs: list[Document], val_fraction: float,
                    seed: int) -> tuple[list[Document], list[Document]]:
    """Split a corpus that fits in memory by `in_val`; never leave val empty."""
    to_val = split_keys([_unit(doc, seed) for doc in docs], val_fraction)
    train = [doc for doc, v in zip(docs, to_val) if not v]
    val = [doc for doc, v in zip(docs, to_val) if v]
    return train, val


def split_keys(keys: list[float], val_fraction: float) -> list[bool]:
    """Which documents of a whole corpus go to val, from their `_unit` keys.

    Whole documents go one way, so val text is never seen in training. If the hash
    sends none to val, the document with the smallest key goes.
    """
    to_val = [key < val_fraction for key in keys]
    if val_fraction > 0 and not any(to_val) and len(keys) > 1:
        to_val[keys.index(min(keys))] = True
    if val_fraction > 0 and (all(to_val) or not any(to_val)):
        raise UserError(f"{len(keys)} document(s) left after cleaning: too few to "
                        "split into train and val; add text or pass --val-fraction 0")
    return to_val


# --- prepare ----------------------------------------------------------------------

NO_TEXT = ("no text left after cleaning: every document was empty, a duplicate or "
           "(with --quality-filters) of low quality; check --source (and --max-bytes)")


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
    text_column: str = "text"  # of .jsonl, .parquet and .arrow sources
    encoder: Encoder = "python"  # or "hf": the same ids (encoding.py)
    tokens: int | None = None  # stop once the train split holds this many
    tokenizer_sample_bytes: int = TOKENIZER_SAMPLE_BYTES
    quality_filters: bool | None = None  # prose heuristics (filters.py); None:
    # on for prose recipes, else off (code fails them)
    revision: str | None = None  # the pinned commit of hf: sources
    separator: str | None = None  # cuts plain text files into documents
    slice: tuple[int, int] | None = None  # (I, N): only slice I of N (slices.py)
    tokenizer_file: str | None = None  # encode with this tokenizer.json, no training

    def check(self) -> None:
        """Reject bad values before any work is done."""
        smallest = 256 + len(DEFAULT_SPECIAL_TOKENS)
        if self.vocab_size < smallest:
            raise UserError(f"--vocab-size {self.vocab_size} is too small: it must "
                            f"hold 256 byte tokens + {len(DEFAULT_SPECIAL_TOKENS)} "
                            f"special tokens (>= {smallest})")
        if self.vocab_size > MAX_VOCAB_SIZE:
            raise UserError(f"--vocab-size {self.vocab_size} is too large: at most "
                            f"{MAX_VOCAB_SIZE:,} (large models use 32k-256k)")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"--val-fraction {self.val_fraction} must be in [0, 1)")
        if self.near_dup_threshold is not None and not 0 < self.near_dup_threshold <= 1:
            raise UserError(f"--near-dup-threshold {self.near_dup_threshold} must be "
                            "in (0, 1]")
        for name in ("max_bytes", "tokens", "tokenizer_sample_bytes", "shard_tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"--{name.replace('_', '-')} {value} must be positive")
        if self.separator == "":
            raise UserError("--document-separator is empty; give the text that "
                            "stands between documents, or leave it out")
        if self.encoder not in ("python", "hf"):
            raise UserError(f"--encoder {self.encoder!r} must be 'python' or 'hf'")
        if self.seed < 0:
            raise UserError(f"--seed {self.seed} must be >= 0")
        if not self.sources:
            raise UserError("no --source given; pass 'stdlib', a path or a URL")


def _check_writable(out: Path) -> None:
    """Fail before any work on an --out we cannot write; the folders this check
    makes are removed again, so a later failure leaves no new, empty folder."""
    made = [p for p in (out, *out.parents) if not p.exists()]  # child first
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise UserError(f"cannot write to output folder {out}: {e.strerror}; "
                        "choose a writable --out") from None
    finally:
        for folder in made:
            if folder.is_dir():
                folder.rmdir()


# A batch of documents as `encode_splits` takes it: its number, the split of each
# kept document, their ids, ids per document (both empty before the batch where a
# resumed run starts encoding) and bytes read.
Routed = tuple[int, list[str], np.ndarray, np.ndarray, int]


def cleaned_batches(sources: list[Source], settings: PrepareSettings,
                    records: dict[str, SourceRecord], quality: QualityReport | None,
                    workers: encoding.Workers,
                    tokenizer: str | None = None, encode_from: int = 0
                    ) -> Iterator[tuple[int, list[Document], np.ndarray, np.ndarray,
                                        int]]:
    """Read -> clean (-> encode) in batches of about `encoding.CHUNK_BYTES`:
    yield each batch's number, kept documents, their ids and ids per document (from
    batch `encode_from` on, with `tokenizer`; else empty) and bytes read.

    What looks at one document alone (`cleaning.inspect`, the encoding) runs in the
    processes of `workers`; what needs all documents in order (duplicates,
    counts) runs here as the results come back, in order, so the output does not
    depend on the number of workers.
    """
    cleaner = Cleaner(records, settings.near_dup_threshold, quality)
    clean = encoding.Job(clean=True, near_dup=settings.near_dup_threshold is not None,
                         redact=settings.redact, quality=quality is not None,
                         encoder=settings.encoder)

    def jobs() -> Iterator[tuple[tuple[int, list[Document]], tuple]]:
        documents = read_documents(sources, None, settings.max_bytes, settings.slice)
        for number, docs in enumerate(encoding.chunks(documents,
                                                      lambda d: len(d.text))):
            job = replace(clean, tokenizer=tokenizer if number >= encode_from else None)
            yield (number, docs), ([d.text for d in docs], job)

    for (number, docs), batch in workers.map(encoding.work, jobs()):
        keep = []
        for doc, seen in zip(docs, batch.inspections):
            records[doc.source].add(doc.path, doc.text)
            keep.append(cleaner.keep(doc.source, seen))
        kept = [Document(seen.text, doc.source, doc.path)
                for doc, seen, k in zip(docs, batch.inspections, keep) if k]
        ids = batch.ids[np.repeat(keep, batch.lengths)]  # (kept ids,)
        yield (number, kept, ids, batch.lengths[keep],
               sum(len(d.text) for d in docs))


def sample_documents(batches: Iterable[tuple], sample_bytes: int
                     ) -> tuple[list[Document], bool]:
    """The first kept documents, up to `sample_bytes` of text, and whether that was
    all."""
    sample, size = [], 0
    for _, kept, *_ in batches:
        for doc in kept:
            sample.append(doc)
            size += len(doc.text)
            if size >= sample_bytes:
                return sample, False
    return sample, True


def encode_documents(splits: list[tuple[str, Document]], tokenizer: str,
                     settings: PrepareSettings, workers: encoding.Workers,
                     start: int) -> Iterator[Routed]:
    """Cleaned documents held in memory, each with its split, encoded in batches
    from batch `start` on (the earlier ones are in shards already)."""
    def jobs() -> Iterator[tuple[tuple[int, list[str], int], tuple]]:
        for number, batch in enumerate(encoding.chunks(splits,
                                                       lambda p: len(p[1].text))):
            texts = [doc.text for _, doc in batch]
            job = encoding.Job(tokenizer=tokenizer, encoder=settings.encoder)
            key = (number, [split for split, _ in batch], sum(map(len, texts)))
            yield key, ((texts, job) if number >= start else ([], encoding.Job()))

    for (number, names, size), batch in workers.map(encoding.work, jobs()):
        yield number, names, batch.ids, batch.lengths, size


def stream_documents(sources: list[Source], settings: PrepareSettings,
                     records: dict[str, SourceRecord], quality: QualityReport | None,
                     tokenizer: str, workers: encoding.Workers, start: int
                     ) -> Iterator[Routed]:
    """The corpus read, cleaned and encoded as it streams past (from batch `start`
    on), each kept document sent to a split by `in_val`.

    Until a document goes to val (if any should), the batches wait here, up to
    `tokenizer_sample_bytes` of kept text: should the corpus end first, it is split
    by `split_keys`, as one held in memory is, which never leaves val empty.
    """
    held: list[tuple] | None = []  # None once batches flow straight through
    held_bytes = 0
    for number, kept, ids, lengths, size in cleaned_batches(
            sources, settings, records, quality, workers, tokenizer, start):
        keys = [_unit(doc, settings.seed) for doc in kept]
        batch = (number, keys, ids, lengths, size)
        if held is None:
            yield routed(batch, settings.val_fraction)
            continue
        held.append(batch)
        held_bytes += sum(len(doc.text) for doc in kept)
        if settings.val_fraction <= 0 or held_bytes >= settings.tokenizer_sample_bytes \
                or min(keys, default=1.0) < settings.val_fraction:
            yield from (routed(b, settings.val_fraction) for b in held)
            held = None
    if held is None:
        return
    all_keys = [key for _, keys, *_ in held for key in keys]
    if not all_keys:
        raise UserError(NO_TEXT)
    to_val = iter(split_keys(all_keys, settings.val_fraction))
    for number, keys, ids, lengths, size in held:
        names = ["val" if next(to_val) else "train" for _ in keys]
        yield number, names, ids, lengths, size


def routed(batch: tuple, val_fraction: float) -> Routed:
    """A batch of (number, keys, ids, lengths, bytes), each document sent to a split
    by its key (`in_val`)."""
    number, keys, ids, lengths, size = batch
    return (number, ["val" if key < val_fraction else "train" for key in keys],
            ids, lengths, size)


def encode_splits(out: Path, batches: Callable[[int], Iterator[Routed]],
                  settings: PrepareSettings, vocab_size: int, fingerprint: str,
                  total_bytes: int | None) -> tuple[dict[str, list[dict]], Counter]:
    """Write encoded batches into shards, resuming from `progress.json`; return each
    split's shards and its number of documents.

    `batches(start)` yields the numbered batches, encoded from batch `start` on:
    those before the saved positions are in shards already (they are still read
    and cleaned: deduplication must see them). `--tokens` stops the reading as soon
    as the train split is full.
    """
    positions = shards.load_progress(out, fingerprint)
    shards.remove_leftovers(out, {s["file"] for p in positions.values()
                                  for s in p.shards})
    dtype = shards.token_dtype(vocab_size)
    writers = {split: shards.ShardWriter(out, split, dtype, settings.shard_tokens,
                                         positions.get(split),
                                         settings.tokens if split == "train" else None)
               for split in ("train", "val")}
    start = min(w.position.chunk for w in writers.values())
    documents = Counter()
    progress = Progress(total_bytes, desc="prepare", unit="B")
    tokens = 0
    try:
        for number, names, ids, lengths, size in batches(start):
            documents.update(names)
            progress.advance(size, tokens=tokens)
            if number < start:
                continue
            in_train = np.repeat(np.array(names) == "train", lengths)  # (ids,)
            finished = [writers["train"].add(number, ids[in_train]),
                        writers["val"].add(number, ids[~in_train])]
            if any(finished):
                shards.save_progress(out, fingerprint, writers)
            tokens += ids.size
            if writers["train"].full:
                break
        return ({split: writer.finish() for split, writer in writers.items()},
                documents)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        progress.close()


def prepare(settings: PrepareSettings, out: Path, workers: int = 2,
            cache_dir: Path | None = None, verbose: bool = False) -> dict:
    """Run the whole pipeline into `out`; return meta.json, source records, timings.

    The tokenizer learns from the first `tokenizer_sample_bytes` of cleaned text.
    A corpus that fits in that sample is split in memory (`split_documents`); a
    larger one is read a second time and split as it streams past (`in_val`).
    With a tokenizer given, there is no sample: one pass reads, cleans and encodes.
    """
    settings.check()
    settings = recipes.expand(settings)
    start = time.perf_counter()
    sources = open_sources(list(settings.sources), list(settings.sha256s),
                           list(settings.licenses), settings.stdlib_tests, cache_dir,
                           settings.text_column, settings.revision,
                           settings.separator)
    _check_writable(out)
    pool = encoding.Workers(workers)  # they start while the sources are read
    try:
        return _prepare(settings, out, sources, pool, start, verbose)
    finally:
        pool.close()


def _prepare(settings: PrepareSettings, out: Path, sources: list[Source],
             workers: encoding.Workers,
             start: float, verbose: bool) -> dict:
    records, quality = fresh_counts(sources, settings)
    whole, train = False, []
    if settings.tokenizer_file is None:  # a first pass, for the tokenizer's sample
        sample, whole = sample_documents(cleaned_batches(
            sources, settings, records, quality, workers),
            settings.tokenizer_sample_bytes)
        if not sample:
            raise UserError(NO_TEXT)
        if whole:
            train, val = split_documents(sample, settings.val_fraction,
                                         settings.seed)
            splits = [("train", d) for d in train] + [("val", d) for d in val]
        else:
            train = [d for d in sample
                     if not in_val(d, settings.val_fraction, settings.seed)]
            records, quality = fresh_counts(sources, settings)  # read again
        del sample
    cleaned = time.perf_counter()

    settings_hash = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True)
                                   .encode("utf-8")).hexdigest()
    tokenizer = tokenizer_for(out, settings, settings_hash, train, verbose)
    del train
    trained = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # the folder changes: incomplete now
    tokenizer.save(out / "tokenizer.json")
    fingerprint = f"{settings_hash}:{file_sha256(out / 'tokenizer.json')}"
    # the bar counts text bytes: only plain files on disk have a known total
    files = [f for s in sources for f in s.files]
    total = (None if any(s.fetch for s in sources) or any(
        f.name.endswith(PACKED_SUFFIXES) for f in files)
        else sum(f.stat().st_size for f in files))
    file = str(out / "tokenizer.json")
    if whole:
        batches = partial(encode_documents, splits, file, settings, workers)
    else:
        batches = partial(stream_documents, sources, settings, records, quality,
                          file, workers)
    written, documents = encode_splits(out, batches, settings, tokenizer.vocab_size,
                                       fingerprint, settings.max_bytes or total)
    if settings.val_fraction > 0 and not written["val"]:
        raise UserError("the val split came out empty; raise --val-fraction or "
                        "--tokens")
    for source in sources:
        records[source.id].skipped_files = list(source.skipped)
    meta = finish(out, settings, tokenizer, list(records.values()), quality,
                  written, documents)
    end = time.perf_counter()
    return {"meta": meta, "records": list(records.values()), "seconds": {
        "read_clean": cleaned - start, "tokenizer": trained - cleaned,
        "encode_write": end - trained, "total": end - start}}


def fresh_counts(sources: list[Source], settings: PrepareSettings
                 ) -> tuple[dict[str, SourceRecord], QualityReport | None]:
    """Empty source records and quality report, for a pass over the sources."""
    records = {s.id: SourceRecord(s.id, s.kind, s.license, sha256=s.sha256)
               for s in sources}
    return records, QualityReport() if settings.quality_filters else None


def tokenizer_for(out: Path, settings: PrepareSettings, settings_hash: str,
                  train: list[Document], verbose: bool) -> Tokenizer:
    """The tokenizer of a resumed run, the one given (--tokenizer), or a new one
    trained on `train` (a new tokenizer makes earlier shards useless)."""
    tokenizer = _resumable_tokenizer(out, settings_hash)
    if tokenizer is None and settings.tokenizer_file:
        tokenizer = Tokenizer.load(settings.tokenizer_file)
    if tokenizer is None:
        (out / shards.PROGRESS).unlink(missing_ok=True)
        tokenizer = Tokenizer.train([d.text for d in train], settings.vocab_size,
                                    pattern=settings.pattern, verbose=verbose)
    return tokenizer


def finish(out: Path, settings: PrepareSettings, tokenizer: Tokenizer,
           records: list[SourceRecord], quality: QualityReport | None,
           written: dict[str, list[dict]], documents: dict[str, int]) -> dict:
    """Write manifest.json, then meta.json (last: its presence means "complete")."""
    outputs = {name: file_sha256(out / name) for name in
               ["tokenizer.json", *(s["file"] for v in written.values() for s in v)]}
    manifest = compliance.build_manifest(records, asdict(settings), outputs)
    manifest["quality_filters"] = quality.to_dict() if quality else "off"
    write_json(out / "manifest.json", manifest)
    meta = {
        "format": "llm-reference-data/1",
        "vocab_size": tokenizer.vocab_size,
        "dtype": shards.token_dtype(tokenizer.vocab_size).name,
        "eot_id": tokenizer.special_tokens[EOT],
        "special_tokens": tokenizer.special_tokens,
        "pattern": settings.pattern,
        "tokenizer": "tokenizer.json",
        "manifest": "manifest.json",
        "documents": {"train": documents["train"], "val": documents["val"]},
        "train_tokens": sum(s["tokens"] for s in written["train"]),
        "val_tokens": sum(s["tokens"] for s in written["val"]),
        "shards": written,
    }
    write_json(out / "meta.json", meta)
    (out / shards.PROGRESS).unlink(missing_ok=True)
    return meta


def _resumable_tokenizer(out: Path, settings_hash: str) -> Tokenizer | None:
    """The tokenizer of an interrupted run with the same settings, if any."""
    try:
        saved = json.loads((out / shards.PROGRESS).read_text(encoding="utf-8"))
        same, sha = saved["fingerprint"].split(":")
        if same == settings_hash and file_sha256(out / "tokenizer.json") == sha:
            return Tokenizer.load(out / "tokenizer.json")
    except (OSError, ValueError, KeyError, UserError):
        pass
    return None


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
        rng = np.random.Generator(np.random.PCG64([self.seed, self.rank, index]))
        return inputs_and_targets(self.windows(rng, self.batch_size))

    def windows(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` random windows of T + 1 tokens drawn with `rng`: (count, T + 1)."""
        windows = rng.integers(0, self.ends[-1], size=count)  # (count,)
        shard = np.searchsorted(self.ends, windows, side="right")  # (count,)
        start = windows - np.concatenate([[0], self.ends])[shard]  # (count,)
        T = self.context_length
        return np.stack([self.shards[s][i:i + T + 1] for s, i in zip(shard, start)]
                        ).reshape(count, T + 1)


def inputs_and_targets(batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows (B, T + 1) -> inputs x = tokens 0..T-1 and targets y = 1..T, int64."""
    import torch  # here, not at the top: `prepare` and its workers start faster
    batch = batch.astype(np.int64)  # (B, T + 1)
    x = torch.from_numpy(np.ascontiguousarray(batch[:, :-1]))  # (B, T)
    y = torch.from_numpy(np.ascontiguousarray(batch[:, 1:]))  # (B, T)
    return x, y
