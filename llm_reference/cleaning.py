"""Cleaning: one spelling per text, then drop empty, duplicate and (optionally)
low-quality documents and scrub personal data, counting everything per source.

Exact duplicates are found by a SHA-256 of the normalized text; near duplicates by
MinHash signatures of 5-word shingles, bucketed by locality-sensitive hashing
(`NearDuplicates`). `clean` chains the steps: `inspect` looks at one document
alone (in a worker process, in `prepare`), `Cleaner` decides in order.
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import regex

from . import compliance, filters
from .compliance import SourceRecord
from .filters import QualityReport
from .sources import Document


def normalize(text: str) -> str:
    """One spelling per string: Unicode NFC and "\\n" line ends.

    NFC composes characters, so "é" typed as e + combining accent becomes the single
    code point U+00E9; otherwise the same word could tokenize two ways, and two copies
    of a document could escape exact deduplication.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


WORD = regex.compile(r"\w+")


def word_shingles(text: str, n: int = 5) -> set[bytes]:
    """The set of n-word windows of `text`: what near-duplicate detection compares.

    Two documents' similarity is the Jaccard index of their shingle sets,
    |A ∩ B| / |A ∪ B|. A document shorter than n words is one shingle.
    """
    words = WORD.findall(text)
    if not words:
        return set()
    return {" ".join(words[i:i + n]).encode("utf-8")
            for i in range(max(1, len(words) - n + 1))}


NUM_PERM, MINHASH_SEED = 256, 1  # values per signature; seed of the permutations


@functools.lru_cache(maxsize=None)
def permutations(num_perm: int = NUM_PERM, seed: int = MINHASH_SEED
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The `num_perm` random hash functions h -> a * h + b (mod 2^32), as the
    arrays (a, b), each (num_perm,) uint32. An odd `a` makes each one a permutation
    of the 32-bit values. Drawn as datasketch draws its "affine32" scheme, so our
    signatures are datasketch's (tests/test_data.py checks it)."""
    draw = np.random.RandomState(seed)
    a = draw.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + 1
    b = draw.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def mix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer: spreads similar 32-bit inputs apart (a bijection;
    uint32 arithmetic wraps around, which is the mod 2^32)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def signature(shingles: set[bytes], num_perm: int = NUM_PERM,
              seed: int = MINHASH_SEED) -> np.ndarray | None:
    """The MinHash signature of a shingle set, (num_perm,) uint32; None if empty.

    Value i is the smallest, over the shingles, of the i-th hash function applied
    to the shingle's 32-bit SHA-1 prefix. Two sets agree on value i with
    probability equal to their Jaccard index.
    """
    if not shingles:
        return None
    a, b = permutations(num_perm, seed)
    values = np.full(num_perm, 0xFFFFFFFF, dtype=np.uint32)
    items = list(shingles)  # any order: a minimum does not depend on it
    for i in range(0, len(items), 8192):  # bounded memory on huge documents
        prefixes = b"".join(hashlib.sha1(s).digest()[:4] for s in items[i:i + 8192])
        h = mix32(np.frombuffer(prefixes, dtype="<u4").astype(np.uint32))  # (n,)
        values = np.minimum(values, (h[:, None] * a + b).min(axis=0))  # (num_perm,)
    return values


@functools.lru_cache(maxsize=None)
def lsh_bands(threshold: float, num_perm: int = NUM_PERM,
              weights: tuple[float, float] = (0.2, 0.8)) -> tuple[int, int]:
    """The LSH layout (bands b, rows r, b * r <= num_perm) for `threshold`.

    Two documents of Jaccard index s share at least one whole band with
    probability 1 - (1 - s^r)^b. Below the threshold that is a false candidate,
    above it 1 minus that is a missed duplicate; we pick the (b, r) that makes the
    weighted areas of both smallest (the weights of datasketch's `MinHashLSH`,
    which picks the same layout: tests/test_data.py checks it).
    """
    pairs = np.array([(b, r) for b in range(1, num_perm + 1)
                      for r in range(1, num_perm // b + 1)], dtype=float)
    b, r = pairs[:, :1], pairs[:, 1:]  # (pairs, 1) each
    below, above = np.linspace(0, threshold, 201), np.linspace(threshold, 1, 201)
    false_candidates = np.trapezoid(1 - (1 - below**r) ** b, below, axis=1)
    missed = np.trapezoid((1 - above**r) ** b, above, axis=1)
    best = np.argmin(weights[0] * false_candidates + weights[1] * missed)
    return int(pairs[best, 0]), int(pairs[best, 1])


class NearDuplicates:
    """Finds documents whose shingle sets overlap by `threshold` or more (Jaccard).

    Comparing every pair is quadratic. MinHash shrinks each shingle set to
    `num_perm` numbers whose agreement rate estimates the Jaccard index (`signature`);
    locality-sensitive hashing (LSH) cuts each signature into bands and compares a
    document only with those that share a whole band with it. We confirm each
    candidate with the MinHash estimate itself, so the bands are tuned to weigh a
    missed duplicate 4x more than a false candidate (`lsh_bands`).

    The signature of one document needs no other document, so `prepare` computes
    them in worker processes; only the lookup (`is_new`) sees all documents, in
    order.
    """

    def __init__(self, threshold: float = 0.85, num_perm: int = NUM_PERM,
                 seed: int = MINHASH_SEED):
        self.threshold, self.num_perm, self.seed = threshold, num_perm, seed
        self.bands, self.rows = lsh_bands(threshold, num_perm)
        # per band: the bytes of that band of a signature -> documents that have it
        self.buckets: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        self.signatures: list[np.ndarray] = []  # of the documents kept, (num_perm,)

    def is_new(self, values: np.ndarray) -> bool:
        """True, and remember it, unless the signature `values` (from `signature`)
        nearly repeats a document seen before."""
        r = self.rows
        keys = [values[i * r:(i + 1) * r].tobytes() for i in range(self.bands)]
        candidates = {doc for bucket, key in zip(self.buckets, keys)
                      for doc in bucket.get(key, ())}
        if any(np.mean(self.signatures[doc] == values) >= self.threshold
               for doc in candidates):
            return False
        for bucket, key in zip(self.buckets, keys):
            bucket.setdefault(key, []).append(len(self.signatures))
        self.signatures.append(values)
        return True

    def is_duplicate(self, text: str) -> bool:
        """True if `text` nearly repeats a document seen before; else remember it."""
        values = signature(word_shingles(text), self.num_perm, self.seed)
        return values is not None and not self.is_new(values)


@dataclass
class Inspection:
    """What can be learnt about one document without looking at any other: the
    work of `clean` that runs in worker processes (`inspect`)."""

    digest: bytes  # SHA-256 of the normalized text: finds exact duplicates
    failure: str | None = None  # "empty", or the quality filter it fails
    text: str = ""  # normalized and redacted (a failure's: its opening)
    redacted: dict[str, int] = field(default_factory=dict)  # kind -> count
    signature: np.ndarray | None = None  # MinHash values (num_perm,), or None


def inspect(text: str, near_dup: bool = True, redact: bool = True,
            quality: bool = False) -> Inspection:
    """Normalize `text` and learn all `clean` needs to decide about it."""
    text = normalize(text)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    if not text.strip():
        return Inspection(digest, "empty")
    failure = filters.first_failure(text) if quality else None
    if failure is not None:
        return Inspection(digest, failure, text[:filters.EXAMPLE_CHARS])
    values = signature(word_shingles(text)) if near_dup else None
    counts: dict[str, int] = {}
    if redact:
        text, counts = compliance.redact(text)
    return Inspection(digest, None, text, dict(counts), values)


class Cleaner:
    """Decides about inspected documents, in order, and counts everything.

    The first copy of a document is kept, so the result depends on source order
    (which is fixed). Memory grows with the documents kept: about 100 bytes each for
    the exact-duplicate set, and about 5 kB each for near-duplicate signatures
    (256 MinHash values, 1 kB, plus a key in each LSH band): 5 GB per million
    documents, so pass --no-near-dup for larger corpora (or deduplicate per --slice).
    """

    def __init__(self, records: dict[str, SourceRecord],
                 near_dup_threshold: float | None = 0.85,
                 quality: QualityReport | None = None):
        self.records, self.quality = records, quality
        self.seen: set[bytes] = set()
        self.near = NearDuplicates(near_dup_threshold) if near_dup_threshold else None

    def keep(self, source: str, seen: Inspection) -> bool:
        """Whether to keep the document `seen` of `source`; count why not."""
        record = self.records[source]
        if seen.failure == "empty":
            record.empty += 1
            return False
        if seen.digest in self.seen:
            record.exact_duplicates += 1
            return False
        if self.quality is not None:
            self.quality.count(seen.failure, seen.text)
        if seen.failure is not None:
            return False  # counted in the quality report
        if self.near is not None and seen.signature is not None and \
                not self.near.is_new(seen.signature):
            record.near_duplicates += 1
            return False
        self.seen.add(seen.digest)
        record.redacted.update(seen.redacted)
        record.kept_documents += 1
        record.kept_bytes += len(seen.text.encode("utf-8"))
        return True


def clean(documents: Iterable[Document], records: dict[str, SourceRecord],
          near_dup_threshold: float | None = 0.85, redact: bool = True,
          quality: QualityReport | None = None) -> Iterator[Document]:
    """Normalize, drop empty, duplicate and (with `quality`) low-quality documents,
    redact PII; count everything.

    Each document is inspected on its own (`inspect`), then kept or dropped in
    order (`Cleaner`); `prepare` runs the first step in worker processes.
    """
    cleaner = Cleaner(records, near_dup_threshold, quality)
    for doc in documents:
        seen = inspect(doc.text, near_dup_threshold is not None, redact,
                       quality is not None)
        if cleaner.keep(doc.source, seen):
            yield Document(seen.text, doc.source, doc.path)
