"""The tokenizer: text -> ids -> the same text, for any text; saved and loaded alike."""

import inspect
import json

import pytest

from {{ cookiecutter.package_name }}.data import load_tokenizer
from {{ cookiecutter.package_name }}.tokenizer import Tokenizer

SAMPLES = [
    "def add(a, b):\n    return a + b\n",
    "naïve café, 東京, emoji 🚀 and combining e\u0301",
    "  tabs\tand\r\nnewlines\n\n\n",
    "",
    "<|endoftext|> looks special but is text here",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    texts = ["the quick brown fox jumps over the lazy dog " * 20, SAMPLES[0] * 10]
    return Tokenizer.train(texts, vocab_size=300)


@pytest.mark.parametrize("text", SAMPLES)
def test_decode_inverts_encode(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_merges_make_frequent_text_shorter(tokenizer):
    text = "the quick brown fox"
    assert len(tokenizer.encode(text)) < len(text.encode("utf-8"))


def test_special_tokens_only_when_allowed(tokenizer):
    eot = tokenizer.special_tokens["<|endoftext|>"]
    assert tokenizer.encode("<|endoftext|>", allowed_special="all") == [eot]
    assert eot not in tokenizer.encode("<|endoftext|>")


def test_saved_tokenizer_encodes_the_same(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = Tokenizer.load(tmp_path / "tokenizer.json")
    assert [loaded.encode(t) for t in SAMPLES] == [tokenizer.encode(t) for t in SAMPLES]


def test_prepared_tokenizer_round_trips_unseen_code(data_dir):
    tokenizer = load_tokenizer(data_dir)
    assert tokenizer.vocab_size == 512
    text = inspect.getsource(json)  # any text round-trips, seen in training or not
    assert tokenizer.decode(tokenizer.encode(text)) == text
