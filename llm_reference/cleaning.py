"""Cleaning: one spelling per text, then drop empty, duplicate and (optionally)
low-quality documents and scrub personal data, counting everything per source.

Exact duplicates are found by a SHA-256 of the normalized text; near duplicates by
MinHash signatures of 5-word shingles, bucketed by locality-sensitive hashing
(`NearDuplicates`). `clean` chains the steps; `prepare` (data.py) calls it.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import TYPE_CHECKING, Iterable, Iterator

import regex

from . import compliance
from .compliance import SourceRecord
from .filters import QualityReport
from .sources import Document

if TYPE_CHECKING:
    from datasketch import MinHash


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


class NearDuplicates:
    """Finds documents whose shingle sets overlap by `threshold` or more (Jaccard).

    Comparing every pair is quadratic. MinHash shrinks each shingle set to
    `num_perm` numbers whose agreement rate estimates the Jaccard index; locality-
    sensitive hashing (LSH) buckets those signatures so that only likely matches are
    compared. We confirm each LSH candidate with the MinHash estimate itself, so the
    LSH bands are tuned to weigh a missed duplicate 4x more than a false candidate.
    """

    def __init__(self, threshold: float = 0.85, num_perm: int = 256, seed: int = 1):
        from datasketch import MinHashLSH  # here: it loads scipy, slow for `train`

        self.threshold, self.num_perm, self.seed = threshold, num_perm, seed
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm,
                              weights=(0.2, 0.8))  # (false positive, false negative)
        self.signatures: list[MinHash] = []

    def signature(self, shingles: set[bytes]) -> MinHash:
        from datasketch import MinHash

        minhash = MinHash(num_perm=self.num_perm, seed=self.seed)
        items = list(shingles)  # any order: a minimum does not depend on it
        for i in range(0, len(items), 8192):  # bounded memory on huge documents
            minhash.update_batch(items[i:i + 8192])
        return minhash

    def is_duplicate(self, text: str) -> bool:
        """True if `text` nearly repeats a document seen before; else remember it."""
        shingles = word_shingles(text)
        if not shingles:
            return False
        minhash = self.signature(shingles)
        if any(self.signatures[key].jaccard(minhash) >= self.threshold
               for key in self.lsh.query(minhash)):
            return True
        self.lsh.insert(len(self.signatures), minhash)
        self.signatures.append(minhash)
        return False


def clean(documents: Iterable[Document], records: dict[str, SourceRecord],
          near_dup_threshold: float | None = 0.85, redact: bool = True,
          quality: QualityReport | None = None) -> Iterator[Document]:
    """Normalize, drop empty, duplicate and (with `quality`) low-quality documents,
    redact PII; count everything.

    The first copy of a document is kept, so the result depends on source order
    (which is fixed). Duplicates go before redaction: we only scrub what we keep.
    Memory grows with the documents kept: about 100 bytes each for the exact-
    duplicate set, and about 2.5 kB each for near-duplicate signatures (256 64-bit
    MinHash values plus their LSH buckets): 2.5 GB per million documents, so pass
    --no-near-dup for larger corpora (or deduplicate per --slice).
    """
    seen: set[bytes] = set()
    near = NearDuplicates(near_dup_threshold) if near_dup_threshold else None
    for doc in documents:
        record = records[doc.source]
        text = normalize(doc.text)
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        if not text.strip():
            record.empty += 1
        elif digest in seen:
            record.exact_duplicates += 1
        elif quality is not None and not quality.check(text):
            continue  # counted in the quality report
        elif near is not None and near.is_duplicate(text):
            record.near_duplicates += 1
        else:
            seen.add(digest)
            if redact:
                text, counts = compliance.redact(text)
                record.redacted.update(counts)
            record.kept_documents += 1
            record.kept_bytes += len(text.encode("utf-8"))
            yield Document(text, doc.source, doc.path)
