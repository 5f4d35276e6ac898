"""Cleaning: one spelling per text, no duplicates, no personal data.

`clean` takes each document through three steps and counts, in the document's
`SourceRecord`, what each step removed or replaced:

    normalize  Unicode NFC and "\\n" line ends                      (normalize)
    dedup      drop empty documents, exact duplicates (by a hash of the text)
               and near duplicates (MinHash LSH over word shingles) (NearDuplicates)
    scrub      replace emails, public IPs, phones and keys by [EMAIL]…
               placeholders                                     (compliance.redact)
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import TYPE_CHECKING, Iterable, Iterator

import regex

from . import compliance
from .compliance import SourceRecord
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
          near_dup_threshold: float | None = 0.85,
          redact: bool = True) -> Iterator[Document]:
    """Normalize, drop empty and duplicate documents, redact PII; count everything.

    The first copy of a document is kept, so the result depends on source order
    (which is fixed). Duplicates go before redaction: we only scrub what we keep.
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
