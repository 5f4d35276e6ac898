"""data: normalise, deduplicate exactly and nearly, and redact personal data.

Protocol: a module with four functions

    normalize(text) -> str
    deduplicate(documents) -> list[str]
    jaccard(a, b) -> float
    redact(text) -> str

`normalize`: one spelling per text: line ends "\\r\\n" and "\\r" become "\\n", then
Unicode NFC (e + combining accent becomes the single character é).

`deduplicate`: documents is a list of str; return the normalized documents, in
order, leaving out every document whose normalized text appeared before (compare
hashes, such as sha256, not the texts: a corpus does not fit in a set of strings).

`jaccard`: the Jaccard index |A ∩ B| / |A ∪ B| of the two texts' sets of 5-word
shingles (windows of 5 consecutive words; words are runs of \\w characters, as
`regex.findall(r"\\w+", text)`; a text of fewer than 5 words is one shingle of
all its words; two texts without words have index 0). Near-duplicate detection
(MinHash) estimates exactly this number.

`redact`: replace each e-mail address by "[EMAIL]" and each IPv4 address by
"[IPV4]", except those that are nobody's data: addresses at the reserved domains
example.com, example.org and example.net (and their subdomains) or under the
.example, .test, .invalid and .localhost top-level domains, and IP addresses that
are not globally routable (private, loopback, documentation ranges: Python's
`ipaddress.IPv4Address(a).is_global`) or are multicast. The test text holds no
phone numbers, keys or other secrets.

Reference: `llm_reference.cleaning.normalize`, the exact-duplicate step of
`cleaning.clean`, `cleaning.word_shingles`, `llm_reference.compliance.redact`.
Command: python -m llm_reference check data --impl my_data_cleaning
Tolerance: texts exactly; the Jaccard index to 1e-9.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Callable

import torch

from ..cleaning import normalize, word_shingles
from ..compliance import redact
from .runner import Node, expect_close, expect_equal, fail


def reference_deduplicate(documents: list[str]) -> list[str]:
    """Keep the first copy of each normalized text, by its sha256, as clean does."""
    seen: set[bytes] = set()
    kept = []
    for text in map(normalize, documents):
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        if digest not in seen:
            seen.add(digest)
            kept.append(text)
    return kept


def reference_jaccard(a: str, b: str) -> float:
    A, B = word_shingles(a), word_shingles(b)
    return len(A & B) / len(A | B) if A | B else 0.0


node = Node(
    id="data",
    title="Collect, license, clean, dedup, scrub PII",
    protocol=__doc__,
    example="my_data_cleaning",
    reference=lambda: SimpleNamespace(
        normalize=normalize, deduplicate=reference_deduplicate,
        jaccard=reference_jaccard, redact=lambda text: redact(text)[0]),
    parts=("normalize", "deduplicate", "jaccard", "redact"),
)

DECOMPOSED = "cafe\u0301 cre\u0300me"  # e + U+0301, e + U+0300
TEXTS = [DECOMPOSED, "one\r\ntwo\rthree\n", "caf\u00e9 already composed", ""]
DOCUMENTS = [
    "def add(a, b):\r\n    return a + b\r\n",
    "The caf\u00e9 opens at nine.",
    "def add(a, b):\n    return a + b\n",  # the first one with \n line ends
    "The cafe\u0301 opens at nine.",  # the second one, decomposed
    "def add(a, b):\n    return a - b\n",  # differs by one character: kept
    "The caf\u00e9 opens at nine.",
]
BASE = ("the quick brown fox jumps over the lazy dog while the cat sleeps in the "
        "warm sun by the open kitchen window")
PAIRS = [
    (BASE, BASE),
    (BASE, BASE.replace("lazy", "sleepy")),
    (BASE, BASE + " and then wakes up"),
    (BASE, "a completely different sentence about compilers and parsers today"),
    ("three short words", "three short words"),
    ("three short words", "three long words"),
    ("", "!!! ???"),
]
PII_TEXT = """Contact alice.smith@gmail.com or bob@mail.univ.edu for access.
Docs use user@example.com, ops@sub.example.org and test@host.test instead.
The server 8.8.8.8 answered; 10.0.0.5, 127.0.0.1 and 192.168.1.20 are private.
Documentation range 203.0.113.7 and multicast 224.0.0.1 are nobody's.
Mixed: write to Carol_99@company.co.uk from 93.184.216.34 today."""


@node.check("normalize_matches_reference", uses=["normalize"],
            section="Normalise, then deduplicate",
            hint='replace "\\r\\n" then "\\r" by "\\n", then '
                 'unicodedata.normalize("NFC", text)')
def normalize_matches_reference(impl_normalize: Callable) -> None:
    for text in TEXTS:
        expect_equal(impl_normalize(text), normalize(text),
                     f"normalize({text!r})")


@node.check("exact_duplicates", uses=["deduplicate"],
            section="Normalise, then deduplicate",
            hint="normalise first, then keep a document only if the hash of its "
                 "normalized text is new; keep the order")
def exact_duplicates(deduplicate: Callable) -> None:
    kept = deduplicate(list(DOCUMENTS))
    if not isinstance(kept, list):
        fail(f"deduplicate returned a {type(kept).__name__}, expected a list")
    expected = reference_deduplicate(DOCUMENTS)
    expect_equal(len(kept), len(expected),
                 "the number of documents kept out of 6 (3 distinct after "
                 "normalising)")
    for i, (a, e) in enumerate(zip(kept, expected)):
        expect_equal(a, e, f"document {i} kept")


@node.check("jaccard_matches_reference", uses=["jaccard"],
            section="Normalise, then deduplicate",
            hint="shingles are windows of 5 consecutive words; the index is "
                 "len(A & B) / len(A | B)")
def jaccard_matches_reference(jaccard: Callable) -> None:
    for a, b in PAIRS:
        expect_close(torch.tensor(float(jaccard(a, b)), dtype=torch.float64),
                     torch.tensor(reference_jaccard(a, b), dtype=torch.float64),
                     f"jaccard({a[:24]!r}…, {b[:24]!r}…)", atol=1e-9, rtol=0)


@node.check("redact_matches_reference", uses=["redact"],
            section="Personal data and secrets",
            hint="redact public addresses only: reserved domains (example.com, "
                 ".test …) and non-global IPs (ipaddress: is_global) stay")
def redact_matches_reference(impl_redact: Callable) -> None:
    ours, expected = impl_redact(PII_TEXT), redact(PII_TEXT)[0]
    for i, (a, e) in enumerate(zip(ours.splitlines(), expected.splitlines())):
        expect_equal(a, e, f"line {i + 1} of the redacted text")
    expect_equal(ours, expected, "the redacted text")
