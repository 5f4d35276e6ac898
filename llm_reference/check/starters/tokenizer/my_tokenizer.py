"""Your byte-level BPE tokenizer, for the `tokenizer` checkpoint.

Fill in the class, then run from this folder:

    python -m llm_reference check tokenizer --impl my_tokenizer:Tokenizer

(`python -m llm_reference check --list tokenizer` prints the full protocol.)
"""

from __future__ import annotations


class Tokenizer:
    @classmethod
    def train(cls, texts: list[str], vocab_size: int) -> Tokenizer:
        """Learn merges on `texts` until `vocab_size` ids exist: 0..255 are the
        bytes, each merge takes the next id; text is first split by a
        pre-tokenization regex and merges never cross a piece."""
        raise NotImplementedError("Tokenizer.train")

    def encode(self, text: str) -> list[int]:
        """Text -> ids, applying the merges in the order they were learned."""
        raise NotImplementedError("Tokenizer.encode")

    def decode(self, ids: list[int]) -> str:
        """Ids -> text; bytes that are not valid UTF-8 become U+FFFD."""
        raise NotImplementedError("Tokenizer.decode")
