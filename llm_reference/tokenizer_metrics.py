"""How good is a tokenizer on a text? Four small measures.

- `bytes_per_token`: UTF-8 bytes per token, the compression. Higher means fewer tokens
  for the same text: more text fits in a context window and training sees more text
  per step. Byte-level BPE starts at 1.0 (one token per byte) and grows with merges.
- `tokens_per_word` ("fertility"): tokens per whitespace-separated word. Close to 1 on
  the language the tokenizer was trained on, higher on text it has seen little of.
- `round_trip_rate`: the fraction of texts that `decode(encode(text))` gives back
  exactly. Byte-level BPE must score 1.0; tokenizers with an "unknown" token do not.
- `vocab_usage`: the fraction of the vocabulary's ids that occur in the encoded text.
  Ids that never occur waste rows of the embedding table.

Each takes a tokenizer (anything with `encode`, `decode` and `vocab_size`) and a text
or an iterable of texts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .errors import UserError


class TextTokenizer(Protocol):
    """What the measures need from a tokenizer."""

    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


def bytes_per_token(tokenizer: TextTokenizer, texts: str | Iterable[str]) -> float:
    """UTF-8 bytes of the texts / tokens they encode to."""
    texts = _as_list(texts)
    num_bytes = sum(len(text.encode("utf-8")) for text in texts)
    return num_bytes / _nonzero(sum(len(tokenizer.encode(text)) for text in texts),
                                "tokens")


def tokens_per_word(tokenizer: TextTokenizer, texts: str | Iterable[str]) -> float:
    """Tokens / whitespace-separated words (`str.split()`): the fertility."""
    texts = _as_list(texts)
    num_tokens = sum(len(tokenizer.encode(text)) for text in texts)
    return num_tokens / _nonzero(sum(len(text.split()) for text in texts), "words")


def round_trip_rate(tokenizer: TextTokenizer, texts: str | Iterable[str]) -> float:
    """Fraction of texts with `decode(encode(text)) == text`."""
    texts = _as_list(texts)
    same = sum(tokenizer.decode(tokenizer.encode(text)) == text for text in texts)
    return same / _nonzero(len(texts), "texts")


def vocab_usage(tokenizer: TextTokenizer, texts: str | Iterable[str]) -> float:
    """Fraction of the `vocab_size` ids that occur in the encoded texts."""
    used = set()
    for text in _as_list(texts):
        used.update(tokenizer.encode(text))
    return len(used) / tokenizer.vocab_size


def _as_list(texts: str | Iterable[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)


def _nonzero(count: int, what: str) -> int:
    if count == 0:
        raise UserError(f"cannot measure a tokenizer on text with no {what}; "
                        "pass a non-empty text")
    return count
