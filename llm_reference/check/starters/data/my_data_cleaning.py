"""Your cleaning pass, for the `data` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check data --impl my_data_cleaning

(`python -m llm_reference check --list data` prints the full protocol.)
"""

from __future__ import annotations


def normalize(text: str) -> str:
    """"\\r\\n" and "\\r" become "\\n", then Unicode NFC."""
    raise NotImplementedError("normalize")


def deduplicate(documents: list[str]) -> list[str]:
    """The normalized documents in order, each normalized text once (the first),
    compared by a hash such as sha256."""
    raise NotImplementedError("deduplicate")


def jaccard(a: str, b: str) -> float:
    """|A ∩ B| / |A ∪ B| of the two texts' sets of 5-word shingles (words: runs of
    \\w; fewer than 5 words is one shingle; no words at all gives 0)."""
    raise NotImplementedError("jaccard")


def redact(text: str) -> str:
    """Public e-mail addresses -> "[EMAIL]", public IPv4 addresses -> "[IPV4]";
    reserved domains (example.com, .test, …) and non-global IPs stay."""
    raise NotImplementedError("redact")
