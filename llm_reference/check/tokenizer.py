"""tokenizer: byte-level BPE, trained, encoding and decoding.

Protocol: a class (or any object) with

    train(texts: list[str], vocab_size: int) -> tokenizer    # a classmethod

and the tokenizer it returns has

    encode(text: str) -> list[int]
    decode(ids: list[int]) -> str

Ids 0..255 are the 256 byte values; each merge learned gets the next free id, from
256 on. `vocab_size` counts every id (bytes, merges and special tokens, if you have
any), so `train(texts, 256 + n)` learns at most n merges. Text is split by a
pre-tokenization regex (GPT-2's or GPT-4's) and merges never cross a piece.
`decode` turns bytes that are not valid UTF-8 (a cut-off character) into U+FFFD.

Reference: `llm_reference.tokenizer.Tokenizer`.
Command: python -m llm_reference check tokenizer --impl my_tokenizer:Tokenizer
Checks compare behaviour (round trips, the first merge, compression within 15% of
the reference's on held-out text), not exact ids: tie-breaking may differ.
"""

from __future__ import annotations

from typing import Any

from ..tokenizer import Tokenizer
from .runner import Node, expect_equal, fail, short

node = Node(
    id="tokenizer",
    title="Byte-level BPE",
    protocol=__doc__,
    example="my_tokenizer:Tokenizer",
    reference=lambda: Tokenizer,
)

# A small corpus: plain English, code and numbers, without the characters that
# `bytes_are_the_first_ids` encodes unseen ("é", "🙂", "~").
CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun, "
    "and the fox runs into the forest to find the other foxes.",
    "A tokenizer turns text into a list of integers and back. The integers are "
    "the ids of tokens; a token is a byte or a sequence of bytes that occurs often.",
    "def train(texts, vocab_size):\n    counts = count_pairs(texts)\n"
    "    return merge(counts, vocab_size)\n",
    "In 2024 the model read 1234567 tokens in 89 seconds, about 13871 per second.",
    "Training repeats one step: count the pairs, merge the most frequent pair, and "
    "give it the next id. The pairs that occur most often become tokens first.",
] * 4
HELD_OUT = ("The fox and the dog read the tokens of the text. The pairs that occur "
            "most often are merged first, and the ids are integers.")
ROUND_TRIPS = [
    "hello world",
    "naïve café, déjà vu",
    "日本語のテキスト",
    "emoji 🙂 and a family 👨‍👩‍👧",
    "e\u0301 (e and a combining accent)",
    "  leading, trailing and   repeated spaces  ",
    "tabs\tand\nnew\r\nlines\n\n",
    "<|endoftext|> is plain text here",
    "def f(x):\n    return x ** 2  # code\n",
]


def train(impl: Any, texts: list[str], vocab_size: int) -> Any:
    tokenizer = impl.train(texts, vocab_size)
    if tokenizer is None:
        fail("train returned None; it must return the trained tokenizer",
             hint="make train a classmethod that builds and returns the tokenizer: "
                  "Tokenizer.train(texts, vocab_size) -> Tokenizer")
    return tokenizer


@node.check("roundtrip", section="Encoding and decoding",
            hint="decode all the ids' bytes together, then decode them as UTF-8 "
                 "once (a character can span tokens)")
def roundtrip(impl: Any) -> None:
    tok = train(impl, CORPUS, 256 + 3 + 60)
    for text in ROUND_TRIPS:
        back = tok.decode(tok.encode(text))
        if back != text:
            fail(f"decode(encode({short(text, 30)})) = {short(back, 40)}")


@node.check("empty_text", section="Encoding and decoding",
            hint="encode('') is [] and decode([]) is ''")
def empty_text(impl: Any) -> None:
    tok = train(impl, CORPUS, 256 + 3 + 20)
    expect_equal(list(tok.encode("")), [], "encode('')")
    expect_equal(tok.decode([]), "", "decode([])")


@node.check("bytes_are_the_first_ids", section="Training: merge the most frequent "
            "pair", hint="start from the 256 bytes: byte b is id b, so text never "
                         "seen in training still encodes")
def bytes_are_the_first_ids(impl: Any) -> None:
    tok = train(impl, CORPUS, 256 + 3 + 20)
    for text in ("é", "🙂", "~"):
        expect_equal(list(tok.encode(text)), list(text.encode("utf-8")),
                     f"encode({text!r})")
    expect_equal(tok.decode([104]), "h", "decode([104])")


@node.check("first_merge_is_most_frequent_pair",
            section="Training: merge the most frequent pair",
            hint="count every adjacent pair (weighted by the piece's count), merge "
                 "the most frequent one and give it id 256")
def first_merge_is_most_frequent_pair(impl: Any) -> None:
    # "aa" occurs 4 times in "aaabdaaabac", more than any other pair.
    tok = train(impl, ["aaabdaaabac"], 256 + 3 + 1)
    expect_equal(list(tok.encode("aa")), [256], "encode('aa') after training on "
                                                 "'aaabdaaabac'")


@node.check("ids_below_vocab_size", section="Training: merge the most frequent pair",
            hint="stop merging when 256 + merges (+ special tokens) reaches "
                 "vocab_size")
def ids_below_vocab_size(impl: Any) -> None:
    vocab_size = 256 + 3 + 30
    tok = train(impl, CORPUS, vocab_size)
    ids = tok.encode(" ".join(CORPUS))
    if max(ids) >= vocab_size:
        fail(f"encode produced id {max(ids)} with vocab_size = {vocab_size}")


@node.check("merges_stay_inside_pieces", section="Pre-tokenization",
            hint="split the text with the pre-tokenization regex first and merge "
                 "only inside each piece")
def merges_stay_inside_pieces(impl: Any) -> None:
    tok = train(impl, ["the cat sat on the mat. " * 40], 256 + 3 + 40)
    for i in tok.encode("the cat sat on the mat. the mat"):
        piece = tok.decode([i])
        for a, b in zip(piece, piece[1:]):
            if a.isalpha() and b == " ":
                fail(f"token {i} = {piece!r} glues a word to the space after it")


@node.check("decode_cut_character", section="Encoding and decoding",
            hint="decode the bytes with errors='replace': a cut-off character "
                 "becomes U+FFFD")
def decode_cut_character(impl: Any) -> None:
    tok = train(impl, CORPUS, 256 + 3 + 20)
    text = tok.decode([0xE6])  # the first of the three bytes of "日"
    if "\ufffd" not in text:
        fail(f"decode([0xE6]) = {text!r}, expected '\\ufffd'")


@node.check("compresses_like_reference", section="Encoding and decoding",
            hint="encode each piece by applying the merge with the lowest rank (the "
                 "earliest learned) among its pairs, until none applies")
def compresses_like_reference(impl: Any) -> None:
    vocab_size = 256 + 3 + 100
    ours = len(train(impl, CORPUS, vocab_size).encode(HELD_OUT))
    reference = len(Tokenizer.train(CORPUS, vocab_size).encode(HELD_OUT))
    if ours > 1.15 * reference:
        fail(f"{ours} tokens for the held-out text, the reference {reference} "
             f"(allowed: 15% more)")
