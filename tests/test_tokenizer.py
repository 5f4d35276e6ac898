"""Tests for the byte-level BPE tokenizer and its metrics.

The peer is Hugging Face `tokenizers`: a `tokenizer.json` we save must encode there
exactly as here, token for token, and GPT-2 style files it writes must load here.
The naive recount-every-merge BPE lives in benchmarks/tokenizer.py.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import pickle
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import ByteLevelBPETokenizer
from tokenizers import Tokenizer as HFTokenizer

from llm_reference.bpe_merges import learn_merges, merge_pair
from llm_reference.errors import UserError
from llm_reference.tokenizer import (
    DEFAULT_SPECIAL_TOKENS,
    PATTERNS,
    Tokenizer,
    bytes_to_unicode,
    count_words,
)
from llm_reference.tokenizer_metrics import (
    bytes_per_token,
    round_trip_rate,
    tokens_per_word,
    vocab_usage,
)

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "tokenizer.py"
_spec = importlib.util.spec_from_file_location("benchmark_tokenizer", _BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

ADVERSARIAL = [
    "", " ", "  ", "\n", "\r\n", "\t", "a\r\nb\rc\n\rd", "  leading", "trailing   ",
    "tabs\t\there\t", "Hello, world! It's DON'T we'll I'M you'RE they've she'd",
    "'s 's'S 'll' ''", "ſ'ſ 'ſ'K", "123 1234567890123456789 3.14159 1e10 0x1F ٣٤٥ ①②Ⅻ",
    "日本語のテキスト、中文文本。한국어 텍스트", "emoji 👍🏽 👨‍👩‍👧‍👦 🇺🇸🇫🇷 ❤️",
    "e\u0301 cafe\u0301 a\u0308\u0304 \u0301start", "zero\u200bwidth\u200dj\u200c",
    "nbsp\u00a0x\u2003y\u3000z\u2009", "\x00\x01\x1b[0m\x7f",
    "\x1c\x1d\x1e\x1f\x85\x0b\x0c",
    "x\u2028y\u2029z", "def f(x):\n    return x  # comment\n\n\n", "    \n\t  \n  x",
    "a" * 300, " " * 200, "!!!???...---===", "\ufeffBOM", "\U0010fffd private \ue000",
    "Ǆǅǆ ß ẞ İı ﬁ", "RTL: עברית العربية", "mixed<|endoftext|>special <|im_start|>user\n"
    "hi<|im_end|>\n", "<|endoftext|><|endoftext|>", "<|endoftext", "<|im_start|x|>",
]
# `regex` knows a newer Unicode than the regex engine in `tokenizers`; they disagree
# only on the newest characters, so we draw characters that Python's own (older)
# Unicode database knows: not "Cn" (unassigned), nor "Cs" (surrogates).
ASSIGNED = st.characters(exclude_categories=("Cs", "Cn"))
PIECES = st.sampled_from([*DEFAULT_SPECIAL_TOKENS, " ", "  ", "\n", "\r\n", "\t", "'s",
                          "'LL", "12345", "x", "é", "日本", "👍🏽", "\u0301", "<|"])
MIXED_TEXT = st.lists(st.one_of(st.text(ASSIGNED, max_size=8), PIECES),
                      max_size=12).map("".join)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return bench.stdlib_corpus(max_bytes=300_000)


@pytest.fixture(scope="module", params=sorted(PATTERNS))
def pair(request, corpus, tmp_path_factory):
    """(ours, Hugging Face's) for a tokenizer we trained and saved."""
    ours = Tokenizer.train(corpus, 1000, pattern=request.param)
    path = tmp_path_factory.mktemp(request.param) / "tokenizer.json"
    ours.save(path)
    return ours, HFTokenizer.from_file(str(path))


def hf_encode(hf: HFTokenizer, text: str, allowed_special: str) -> list[int]:
    """Hugging Face always splits out special tokens unless told to encode them."""
    hf.encode_special_tokens = allowed_special == "none"
    return hf.encode(text).ids


# ---- parity with Hugging Face tokenizers ------------------------------------------


def test_hf_parity_on_corpus(pair, corpus):
    ours, hf = pair
    for text in corpus:
        ids = ours.encode(text)
        assert ids == hf_encode(hf, text, "none")
        assert hf.decode(ids) == ours.decode(ids) == text


@pytest.mark.parametrize("allowed_special", ["all", "none"])
def test_hf_parity_on_adversarial_strings(pair, allowed_special):
    ours, hf = pair
    for text in ADVERSARIAL:
        expected = hf_encode(hf, text, allowed_special)
        assert ours.encode(text, allowed_special) == expected, text


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=MIXED_TEXT, allowed_special=st.sampled_from(["all", "none"]))
def test_hf_parity_on_random_text(pair, text, allowed_special):
    ours, hf = pair
    expected = hf_encode(hf, text, allowed_special)
    assert ours.encode(text, allowed_special) == expected


def test_hf_parity_longest_special_token_wins(tmp_path):
    ours = Tokenizer.train(["ab ab"], 270, special_tokens=["<s>", "<s><s>", "s>"])
    ours.save(tmp_path)
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = "<s><s><s>s> ab<s"
    assert ours.encode(text, "all") == hf_encode(hf, text, "all")
    assert ours.encode(text, "all")[:2] == [ours.special_tokens["<s><s>"],
                                            ours.special_tokens["<s>"]]


@pytest.fixture(scope="module")
def hf_byte_level(corpus, tmp_path_factory):
    """A GPT-2 style BPE trained by Hugging Face, saved as vocab.json + merges.txt."""
    hf = ByteLevelBPETokenizer()
    hf.train_from_iterator(corpus, vocab_size=600, special_tokens=["<|endoftext|>"],
                           show_progress=False)
    folder = tmp_path_factory.mktemp("gpt2")
    hf.save_model(str(folder))
    hf.save(str(folder / "tokenizer.json"))
    return hf, folder


def test_from_gpt2_files_matches_hf(hf_byte_level, corpus):
    hf, folder = hf_byte_level
    ours = Tokenizer.from_gpt2_files(folder / "vocab.json", folder / "merges.txt")
    assert ours.special_tokens == {"<|endoftext|>": 0}  # HF puts specials first
    assert ours.vocab_size == hf.get_vocab_size()
    for text in corpus[:40] + ADVERSARIAL:
        assert ours.encode(text, "all") == hf.encode(text).ids


def test_load_hf_byte_level_tokenizer_json(hf_byte_level):
    hf, folder = hf_byte_level
    ours = Tokenizer.load(folder / "tokenizer.json")
    assert ours.pattern == "gpt2"  # ByteLevel(use_regex=true) splits with GPT-2's regex
    for text in ADVERSARIAL:
        assert ours.encode(text, "all") == hf.encode(text).ids


def test_bytes_to_unicode_is_gpt2s_table():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    from tokenizers.pre_tokenizers import ByteLevel

    assert set(table.values()) == set(ByteLevel.alphabet())


# ---- encode / decode ----------------------------------------------------------------


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(), MIXED_TEXT))
def test_decode_inverts_encode(pair, text):
    ours, _ = pair
    assert ours.decode(ours.encode(text)) == text
    assert ours.decode(ours.encode(text, "all")) == text


def test_special_tokens_only_where_allowed(pair):
    ours, _ = pair
    eot, start, end = (ours.special_tokens[s] for s in DEFAULT_SPECIAL_TOKENS)
    text = "<|im_start|>user\nhi<|im_end|><|endoftext|>"
    assert not set(ours.encode(text)) & {eot, start, end}
    assert ours.encode(text, "all") == [start, *ours.encode("user\nhi"), end, eot]
    only_start = ours.encode(text, allowed_special={"<|im_start|>"})
    assert only_start[0] == start and not set(only_start[1:]) & {eot, start, end}


def test_bpe_merges_lowest_rank_first_leftmost_on_ties():
    ours = Tokenizer.train(["aaaa aaa"] * 3, 257, special_tokens=[])
    (pair, aa), = ours.merges.items()
    assert ours.vocab[aa] == b"aa"
    assert ours.encode("aaa") == [aa, ord("a")]  # leftmost pair first
    assert merge_pair([97, 97, 97, 97], pair, aa) == [aa, aa]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_encode_iterable_equals_encode(pair, data):
    ours, _ = pair
    alphabet = st.sampled_from(list("ab '\n\r\t.,1é日\u00a0\x85") + ["'ll", "'S"])
    text = data.draw(st.one_of(st.lists(alphabet).map("".join), st.text()))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
    assert list(ours.encode_iterable(chunks)) == ours.encode(text)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_encode_iterable_with_special_tokens_across_chunks(pair, data):
    ours, _ = pair
    pieces = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|end", "oftext|>",
              "<|", "|>", "<", "a b", " ", "\n", "x1"]
    text = "".join(data.draw(st.lists(st.sampled_from(pieces), max_size=12)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
    allowed = data.draw(st.sampled_from(["none", "all", {"<|endoftext|>"}]))
    assert (list(ours.encode_iterable(chunks, allowed_special=allowed))
            == ours.encode(text, allowed_special=allowed))


def test_encode_iterable_joins_a_special_token_split_in_two(pair):
    ours, _ = pair
    eot = ours.special_tokens["<|endoftext|>"]
    ids = list(ours.encode_iterable(["hi <|endof", "text|> there"], "all"))
    assert ids == ours.encode("hi <|endoftext|> there", "all") and eot in ids


def test_encode_iterable_streams_a_file_lazily(pair, corpus, tmp_path):
    ours, _ = pair
    path = tmp_path / "corpus.txt"
    path.write_text("".join(corpus[:20]), encoding="utf-8")
    with open(path, encoding="utf-8", newline="") as f:
        assert list(ours.encode_iterable(f)) == ours.encode(path.read_text("utf-8"))
    endless = itertools.cycle(["hello world, ", "again\n"])
    assert len(list(itertools.islice(ours.encode_iterable(endless), 1000))) == 1000


# ---- training -----------------------------------------------------------------------


def test_vocabulary_layout(pair):
    ours, _ = pair
    assert ours.vocab_size == 1000
    assert all(ours.vocab[i] == bytes([i]) for i in range(256))
    assert len(set(ours.vocab.values())) == len(ours.vocab)
    assert list(ours.merges.values()) == list(range(256, 997))
    specials = {s: 997 + n for n, s in enumerate(DEFAULT_SPECIAL_TOKENS)}
    assert ours.special_tokens == specials


def test_training_is_deterministic(corpus, tmp_path):
    first = Tokenizer.train(corpus[:30], 600)
    second = Tokenizer.train(iter(corpus[:30]), 600)  # a generator works as well
    assert first.merges == second.merges
    first.save(tmp_path / "a.json")
    second.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_training_stops_when_pairs_run_out():
    ours = Tokenizer.train(["ab ab"], 1000)
    assert len(ours.merges) == 2  # "ab", then " " + "ab"
    assert ours.vocab_size == 256 + 2 + len(DEFAULT_SPECIAL_TOKENS)
    assert sorted(ours.special_tokens.values()) == [258, 259, 260]


# few letters make many ties and repeated pairs ("aaa"); any bytes make the rest
WORDS = st.binary(min_size=1, max_size=10) | st.text("abc", min_size=1).map(str.encode)


def _merge_bytes(tokenizer_vocab, merges) -> list[tuple[bytes, bytes]]:
    return [(tokenizer_vocab[a], tokenizer_vocab[b]) for a, b in merges]


def test_incremental_training_equals_naive_on_corpus(corpus):
    word_counts = count_words(corpus[:10], "gpt4")
    vocab, merges = learn_merges(word_counts, 150)
    assert _merge_bytes(vocab, merges) == bench.naive_merges(word_counts, 150)


@settings(max_examples=150, deadline=None)
@given(word_counts=st.dictionaries(WORDS, st.integers(1, 6), max_size=12),
       num_tokens=st.integers(0, 40))
def test_incremental_training_equals_naive_on_random_words(word_counts, num_tokens):
    vocab, merges = learn_merges(word_counts, num_tokens)
    assert _merge_bytes(vocab, merges) == bench.naive_merges(word_counts, num_tokens)
    assert len(set(vocab.values())) == len(vocab)  # every merge made a new token


def test_ties_break_on_smallest_byte_strings():
    # after "ab" (id 256), ("ab", "x") and ("z", "x") tie; by ids (122, 120) would win
    vocab, merges = learn_merges({b"ab": 5, b"abx": 1, b"zx": 1}, 3)
    assert _merge_bytes(vocab, merges) == [(b"a", b"b"), (b"ab", b"x"), (b"z", b"x")]


# ---- files --------------------------------------------------------------------------


def test_save_and_load_round_trip(pair, tmp_path):
    ours, _ = pair
    ours.save(tmp_path)  # a folder gets tokenizer.json
    loaded = Tokenizer.load(tmp_path)
    assert (loaded.vocab, loaded.merges) == (ours.vocab, ours.merges)
    assert loaded.special_tokens == ours.special_tokens
    assert loaded.pattern == ours.pattern


def test_pickles_for_worker_processes(pair):
    ours, _ = pair
    copy = pickle.loads(pickle.dumps(ours))
    assert copy.encode(ADVERSARIAL[10]) == ours.encode(ADVERSARIAL[10])
    assert copy.special_tokens == ours.special_tokens


def _saved(tmp_path, edit) -> Path:
    ours = Tokenizer.train(["hello world"], 270)
    spec = ours.to_hf_dict()
    edit(spec)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


@pytest.mark.parametrize("edit", [
    lambda s: s["model"].update(type="WordPiece"),
    lambda s: s["model"].update(byte_fallback=True),
    lambda s: s.update(normalizer={"type": "NFKC"}),
    lambda s: s["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\w+"),
    lambda s: s["model"]["merges"].append("Ġ zz"),
    lambda s: s["model"]["merges"].append(s["model"]["merges"][0]),
    lambda s: s["model"]["vocab"].pop("!"),
    lambda s: s["model"].pop("vocab"),
    lambda s: s["added_tokens"][0].update(special=False),
])
def test_load_rejects_unsupported_files(tmp_path, edit):
    with pytest.raises(UserError):
        Tokenizer.load(_saved(tmp_path, edit))


def test_load_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        Tokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="not valid JSON"):
        Tokenizer.load(tmp_path / "bad.json")
    with pytest.raises(UserError, match="cannot read"):
        Tokenizer.from_gpt2_files(tmp_path / "none.json", tmp_path / "none.txt")


def test_from_gpt2_files_rejects_unknown_merge_tokens(tmp_path):
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\n", encoding="utf-8")
    with pytest.raises(UserError, match="Ġt"):
        Tokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


# ---- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"vocab_size": 258}, "at least 259"),
    ({"vocab_size": 255, "special_tokens": []}, "at least 256"),
    ({"vocab_size": "1000"}, "vocab_size"),
    ({"vocab_size": 1000.0}, "vocab_size"),
    ({"vocab_size": 1000, "pattern": "gpt3"}, "pattern"),
    ({"vocab_size": 1000, "special_tokens": ["<s>", ""]}, "special_tokens"),
    ({"vocab_size": 1000, "special_tokens": ["<s>", "<s>"]}, "twice"),
    ({"vocab_size": 1000, "special_tokens": "<s>"}, "special_tokens"),
])
def test_train_rejects_bad_arguments(kwargs, message):
    with pytest.raises(UserError, match=message):
        Tokenizer.train(["some text"], **kwargs)
    with pytest.raises(UserError, match="not one string"):
        Tokenizer.train("some text", 1000)


def test_train_accepts_the_smallest_vocabulary():
    ours = Tokenizer.train(["some text"], 256, special_tokens=[])
    assert ours.vocab_size == 256 and not ours.merges


def test_encode_and_decode_reject_bad_arguments(pair):
    ours, _ = pair
    with pytest.raises(UserError, match="allowed_special"):
        ours.encode("x", allowed_special="some")
    with pytest.raises(UserError, match="allowed_special"):
        ours.encode("x", allowed_special=["<|endoftext|>"])
    with pytest.raises(UserError, match="<nope>"):
        ours.encode("x", allowed_special={"<nope>"})
    with pytest.raises(UserError, match="token id 1000"):
        ours.decode([1, 1000])
    with pytest.raises(UserError, match="token id -1"):
        ours.decode([-1])


def test_constructor_rejects_inconsistent_vocabularies():
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(UserError, match="256 single bytes"):
        Tokenizer({i: b for i, b in vocab.items() if i != 7} | {7: b"xy"}, {}, {})
    with pytest.raises(UserError, match="0..N-1"):
        Tokenizer(vocab, {}, {"<s>": 300})
    with pytest.raises(UserError, match="must join"):
        Tokenizer(vocab | {256: b"ab"}, {(97, 99): 256}, {})
    abc = vocab | {256: b"abc", 257: b"bc", 258: b"ab"}
    with pytest.raises(UserError, match="made before"):  # uses 257 before making it
        Tokenizer(abc, {(97, 257): 256, (98, 99): 257}, {})
    with pytest.raises(UserError, match="new token"):  # makes "abc" twice
        Tokenizer(abc, {(98, 99): 257, (97, 257): 256, (97, 98): 258, (258, 99): 256},
                  {})


# ---- metrics ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bytes_only() -> Tokenizer:
    """No merges: one token per byte."""
    return Tokenizer.train(["x"], 259)


def test_bytes_per_token(bytes_only, pair, corpus):
    assert bytes_per_token(bytes_only, "plain ascii text") == 1.0
    assert bytes_per_token(bytes_only, ["é", "日"]) == 1.0
    ours, _ = pair
    ids = ours.encode(corpus[0])
    assert bytes_per_token(ours, corpus[0]) == len(corpus[0].encode()) / len(ids) > 2


def test_tokens_per_word(bytes_only, pair):
    assert tokens_per_word(bytes_only, "ab cd") == 2.5  # "ab" + " cd": 5 bytes
    ours, _ = pair
    assert tokens_per_word(ours, ["the function returns", "a value"]) < 2


def test_round_trip_rate(pair):
    ours, _ = pair
    assert round_trip_rate(ours, ADVERSARIAL) == 1.0

    class Lowercasing:
        vocab_size = 256

        def encode(self, text):
            return list(text.lower().encode())

        def decode(self, ids):
            return bytes(ids).decode()

    assert round_trip_rate(Lowercasing(), ["abc", "ABC"]) == 0.5


def test_vocab_usage(bytes_only, pair, corpus):
    assert vocab_usage(bytes_only, "abca") == 3 / 259
    ours, _ = pair
    assert 0.5 < vocab_usage(ours, corpus) <= 1.0


@pytest.mark.parametrize("metric", [bytes_per_token, tokens_per_word, round_trip_rate])
def test_metrics_reject_empty_text(bytes_only, metric):
    with pytest.raises(UserError, match="no "):
        metric(bytes_only, [])


@pytest.mark.parametrize("normalizer, ignore_merges", [("NFC", False), (None, True)])
def test_nfc_and_ignore_merges_match_hugging_face(tmp_path, normalizer,
                                                  ignore_merges):
    """Qwen's NFC normalizer and Llama 3's ignore_merges, as HF applies them."""
    base = Tokenizer.train(["cafe\u0301 café caf cafés " * 5, "abc abcd"], 300)
    ours = Tokenizer(base.vocab, base.merges, base.special_tokens, base.pattern,
                     normalizer, ignore_merges)
    ours.save(tmp_path)
    loaded = Tokenizer.load(tmp_path)
    assert (loaded.normalizer, loaded.ignore_merges) == (normalizer, ignore_merges)
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in ["cafe\u0301 café", "caf cafés abcd", "e\u0301\u0301 x"]:
        assert loaded.encode(text) == hf.encode(text).ids, text
