"""Byte-level BPE: the tokenizer of GPT-2, GPT-4 and most LLMs since, from scratch.

A tokenizer turns text into a list of integer ids and back. Byte-level BPE works on the
UTF-8 bytes of the text, so every string can be encoded and nothing is ever "unknown":

1. Pre-tokenize: a regular expression splits the text into pieces ("pre-tokens"), so a
   merge never glues a word to the space or punctuation around it (`PATTERNS`).
2. Start each piece as its bytes: ids 0..255 are the 256 byte values.
3. Merge: training learned an ordered list of pairs to merge; the pair learned first
   ("rank 0") is applied first. `Tokenizer.train` learns them, `Tokenizer._bpe`
   applies them.

Training repeatedly merges the most frequent adjacent pair of tokens in the corpus into
a new token, until the vocabulary is full: `count_words` here, then `learn_merges` in
`bpe_merges.py`, which also says how ties are broken.

Ids: 0..255 are the bytes, then the merged tokens in the order they were learned, then
the special tokens (`<|endoftext|>` …), which plain text never produces: `encode` emits
them only where `allowed_special` allows.

`save` writes a Hugging Face `tokenizer.json` that `tokenizers.Tokenizer.from_file`
loads and that encodes exactly as we do; `from_gpt2_files` reads GPT-2's `vocab.json` +
`merges.txt`. Both store a token's bytes as text with GPT-2's `bytes_to_unicode` table.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import regex
from tqdm import tqdm

from .atomic import write_json
from .bpe_merges import Pair, learn_merges, merge_pair
from .errors import UserError

# The pre-tokenizer regexes of GPT-2 and of GPT-4 (tiktoken's cl100k_base). GPT-4's
# keeps a space before a word, splits numbers into runs of at most 3 digits and
# matches contractions case-insensitively. Llama 3's and Qwen2's are GPT-4's, written
# as their tokenizer.json files write them (Qwen2 splits numbers into single
# digits); we keep them so that those tokenizers load.
PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"""
    r"""|\s+(?!\S)|\s+""",
    "gpt4": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+""",
    "llama3": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "qwen2": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}
DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CACHE_SIZE = 2**16  # pre-tokens whose ids `encode` remembers (least recently used go)

# Points where both patterns split a text the same whether or not more follows: before
# a space that follows non-whitespace, and before whitespace that follows a letter or
# digit. `encode_iterable` cuts a stream there; (?r) searches from the end.
_SAFE_CUT = regex.compile(r"(?r)(?<=\S)(?= )|(?<=[\p{L}\p{N}])(?=\s)")
_NO_RANK = float("inf")

AllowedSpecial = Literal["none", "all"] | set[str] | frozenset[str]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from the 256 byte values to printable characters.

    Printable bytes map to themselves; the others (space, control bytes …) map to
    unused code points from 256 up, in order, so the space byte 32 becomes "Ġ". Files
    in the GPT-2 / Hugging Face format store each token's bytes as such a string.
    """
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + n) for n, b in enumerate(others)})
    return dict(sorted(table.items()))


def count_words(texts: Iterable[str], pattern: str, verbose: bool = False) -> Counter:
    """Pre-tokenize `texts` and count each distinct piece ("word"): {bytes: count}.

    Training only needs these counts: a word that occurs 10,000 times is merged once
    and its pairs are weighted by 10,000.
    """
    split = regex.compile(_pattern_regex(pattern)).findall
    counts: Counter = Counter()
    for text in tqdm(texts, desc="pre-tokenizing", unit="text", disable=not verbose):
        counts.update(split(text))
    return Counter({word.encode("utf-8"): n for word, n in counts.items()})


class Tokenizer:
    """A byte-level BPE tokenizer: encode text to ids, decode ids to text.

    `vocab` maps each ordinary id to its bytes, `merges` maps a pair of ids to the id
    it merges into (in rank order) and `special_tokens` maps each special token's text
    to its id. Build one with `train`, `load` or `from_gpt2_files`.

    Two options exist to read open models' tokenizers exactly: `normalizer="NFC"`
    composes characters before splitting (Qwen: "e" + U+0301 becomes "é"), and
    `ignore_merges=True` takes a pre-token that is itself in the vocabulary as one
    token without running the merges (Llama 3).
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: dict[Pair, int],
        special_tokens: dict[str, int],
        pattern: str = "gpt4",
        normalizer: str | None = None,
        ignore_merges: bool = False,
    ):
        self.vocab = dict(vocab)
        self.merges = dict(merges)
        self.special_tokens = dict(special_tokens)
        self.pattern = pattern
        self.normalizer, self.ignore_merges = normalizer, ignore_merges
        self._check()
        self._split = regex.compile(PATTERNS[pattern]).findall
        self._ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self._id_of = {token: i for i, token in self.vocab.items()}
        self._byte_ids = [self._id_of[bytes([b])] for b in range(256)]
        self._bytes_of = self.vocab | {
            i: text.encode("utf-8") for text, i in self.special_tokens.items()
        }
        cache = functools.lru_cache(maxsize=CACHE_SIZE)
        self._encode_piece = cache(self._encode_piece_uncached)

    def __reduce__(self):
        """Pickle as the constructor's arguments (the encode cache is rebuilt)."""
        return Tokenizer, (self.vocab, self.merges, self.special_tokens, self.pattern,
                           self.normalizer, self.ignore_merges)

    def _check(self) -> None:
        """Reject a vocabulary that cannot work; names what is wrong."""
        _pattern_regex(self.pattern)
        if self.normalizer not in (None, "NFC"):
            raise UserError(f"normalizer {self.normalizer!r}: only NFC (or none) is "
                            "supported")
        ids = sorted([*self.vocab, *self.special_tokens.values()])
        if ids != list(range(len(ids))):
            raise UserError("tokenizer ids must be 0..N-1, each used once; "
                            "the vocabulary file is inconsistent")
        singles = {token for token in self.vocab.values() if len(token) == 1}
        if len(singles) != 256:
            raise UserError(f"a byte-level vocabulary needs all 256 single bytes; "
                            f"it has {len(singles)}")
        made = {i for i, token in self.vocab.items() if len(token) == 1}
        for rank, ((a, b), new_id) in enumerate(self.merges.items()):
            if a not in made or b not in made or new_id in made or (
                self.vocab.get(new_id) != self.vocab[a] + self.vocab[b]
            ):
                raise UserError(f"merge {rank} ({a}, {b}) -> {new_id} must join two "
                                "tokens made before it (bytes or earlier merges) into "
                                "a new token; the merges do not fit the vocabulary")
            made.add(new_id)
        if "" in self.special_tokens:
            raise UserError("a special token must not be the empty string")

    @property
    def vocab_size(self) -> int:
        """Number of ids (ordinary and special): the size of the embedding table."""
        return len(self.vocab) + len(self.special_tokens)

    # ---- training -------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        pattern: str = "gpt4",
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        verbose: bool = False,
    ) -> Tokenizer:
        """Learn a tokenizer of `vocab_size` ids from `texts`, an iterable of documents.

        The vocabulary is 256 bytes + learned merges + `special_tokens`; it comes out
        smaller only if the texts run out of pairs to merge. Special-token text inside
        `texts` is treated as plain text.
        """
        _pattern_regex(pattern)
        if isinstance(texts, str):
            raise UserError("texts must be an iterable of documents, not one string; "
                            "wrap it in a list")
        specials = _check_special_tokens(special_tokens)
        smallest = 256 + len(specials)
        if type(vocab_size) is not int or vocab_size < smallest:
            raise UserError(f"vocab_size={vocab_size!r}: 256 byte tokens + "
                            f"{len(specials)} special tokens need an integer of at "
                            f"least {smallest}")
        word_counts = count_words(texts, pattern, verbose)
        num_tokens = vocab_size - smallest
        vocab, merges = learn_merges(word_counts, num_tokens, verbose)
        ids = {token: len(vocab) + n for n, token in enumerate(specials)}
        return cls(vocab, merges, ids, pattern)

    # ---- encoding -------------------------------------------------------------------

    def encode(self, text: str, allowed_special: AllowedSpecial = "none") -> list[int]:
        """Text -> ids. Special tokens come only from the texts `allowed_special` names:
        "none" (the default: special-token text is encoded as ordinary text), "all",
        or a set of special tokens."""
        specials = self._allowed(allowed_special)
        if not specials:
            return self._encode_ordinary(text)
        by_length = sorted(specials, key=len, reverse=True)  # longest match wins
        parts = regex.split(f"({'|'.join(map(regex.escape, by_length))})", text)
        ids: list[int] = []
        for n, part in enumerate(parts):  # odd positions hold the special tokens
            if n % 2:
                ids.append(self.special_tokens[part])
            else:
                ids.extend(self._encode_ordinary(part))
        return ids

    def encode_iterable(self, texts: Iterable[str],
                        allowed_special: AllowedSpecial = "none") -> Iterator[int]:
        """Encode a stream of text chunks (a file's lines, say) lazily: the ids equal
        `encode("".join(texts), allowed_special)`, yet only the text since the last
        cut is held.

        We cut where the text after a point cannot change how the text before it is
        pre-tokenized (`_SAFE_CUT`). Memory grows only with the longest stretch that
        has no such point. An allowed special token is a cut of its own, but only
        once the text from its start holds the longest special token: until then a
        longer one might still match there, or a token split across two chunks
        (`<|endof` + `text|>`) might still be completed.
        """
        specials = self._allowed(allowed_special)
        by_length = sorted(specials, key=len, reverse=True)  # longest match wins
        matcher = (regex.compile("|".join(map(regex.escape, by_length)))
                   if specials else None)
        longest = len(by_length[0]) if specials else 1
        buffer, searched = "", 0  # `searched`: buffer[:searched] has no safe cut
        for chunk in texts:
            buffer += chunk
            settled = len(buffer) - longest + 1  # a special starting before is whole
            done = 0
            for match in matcher.finditer(buffer) if matcher else ():
                if match.start() >= settled:
                    break
                yield from self._encode_ordinary(buffer[done:match.start()])
                yield self.special_tokens[match.group()]
                done = match.end()
            if done:
                buffer, settled, searched = buffer[done:], settled - done, 0
            end = max(settled, 0)  # buffer[:end] is ordinary text for sure
            cut = _SAFE_CUT.search(buffer, max(searched - 1, 0), end)
            searched = end
            if cut and cut.start() > 0:
                yield from self._encode_ordinary(buffer[: cut.start()])
                buffer, searched = buffer[cut.start():], end - cut.start()
        yield from self.encode(buffer, specials or "none")

    def _allowed(self, allowed_special: AllowedSpecial) -> set[str]:
        """The special tokens `encode` may emit, from its `allowed_special` argument."""
        if allowed_special == "none":
            return set()
        if allowed_special == "all":
            return set(self.special_tokens)
        if isinstance(allowed_special, (set, frozenset)):
            unknown = sorted(set(allowed_special) - set(self.special_tokens))
            if unknown:
                raise UserError(f"allowed_special names unknown special tokens "
                                f"{unknown}; this tokenizer has "
                                f"{sorted(self.special_tokens)}")
            return set(allowed_special)
        raise UserError(f"allowed_special={allowed_special!r}: use 'none', 'all' "
                        "or a set of special tokens")

    def _encode_ordinary(self, text: str) -> list[int]:
        """Text without special tokens -> ids: pre-tokenize, then BPE each piece."""
        if self.normalizer:
            text = unicodedata.normalize(self.normalizer, text)
        ids: list[int] = []
        for piece in self._split(text):
            ids.extend(self._encode_piece(piece))
        return ids

    def _encode_piece_uncached(self, piece: str) -> tuple[int, ...]:
        """One pre-token -> ids. Wrapped in an LRU cache: most pieces repeat."""
        if self.ignore_merges and piece.encode("utf-8") in self._id_of:
            return (self._id_of[piece.encode("utf-8")],)
        return tuple(self._bpe([self._byte_ids[b] for b in piece.encode("utf-8")]))

    def _bpe(self, ids: list[int]) -> list[int]:
        """Apply the merges to one pre-token's ids, in the order they were learned.

        While some adjacent pair is a merge, merge every occurrence (left to right) of
        the pair of lowest rank. tiktoken and Hugging Face merge one occurrence at a
        time, the lowest rank and then the leftmost first; that gives the same ids,
        because a merge's result only takes part in merges of higher rank (`_check`).
        """
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: self._ranks.get(p, _NO_RANK))
            if pair not in self._ranks:
                break
            ids = merge_pair(ids, pair, self.merges[pair])
        return ids

    # ---- decoding -------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Ids -> the bytes they stand for (special tokens as their UTF-8 text)."""
        try:
            return b"".join(self._bytes_of[i] for i in ids)
        except KeyError as e:
            raise UserError(f"token id {e.args[0]!r} is not in this tokenizer (ids "
                            f"0..{self.vocab_size - 1}); was the data made with it?"
                            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text. Bytes that are not valid UTF-8 (a cut-off character) become
        U+FFFD, the replacement character."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ---- files ----------------------------------------------------------------------

    def to_hf_dict(self) -> dict:
        """This tokenizer in Hugging Face's `tokenizer.json` layout.

        Pre-tokenizer: our regex as a `Split`, then `ByteLevel` with `use_regex` false,
        which only maps bytes to characters. Model: BPE whose merges keep our rank
        order, with `ignore_merges` false so every piece goes through the merges.
        """
        text = {i: _bytes_to_text(token) for i, token in sorted(self.vocab.items())}
        vocab = {token: i for i, token in text.items()} | self.special_tokens
        merges = [f"{text[a]} {text[b]}" for a, b in self.merges]  # "Ġ t"
        added = [{"id": i, "content": s, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True}
                 for s, i in sorted(self.special_tokens.items(), key=lambda kv: kv[1])]
        return {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": added,
            "normalizer": {"type": self.normalizer} if self.normalizer else None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": PATTERNS[self.pattern]},
                 "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": False},
            ]},
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": False,
                        "trim_offsets": True, "use_regex": False},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": self.ignore_merges,
                      "vocab": vocab, "merges": merges},
        }

    def save(self, path: str | Path) -> None:
        """Write a Hugging Face `tokenizer.json` (into `path` if it is a folder)."""
        write_json(_json_path(path), self.to_hf_dict())

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a `tokenizer.json` written by `save`, or a byte-level BPE one like it
        (such as GPT-2's, whose ByteLevel pre-tokenizer applies the GPT-2 regex)."""
        path = _json_path(path)
        spec = _read_json(path)
        try:
            pattern = _hf_pattern(spec["pre_tokenizer"])
            model, added = spec["model"], spec["added_tokens"]
            normalizer = (spec["normalizer"] or {}).get("type")
            supported = normalizer in (None, "NFC") and model["type"] == "BPE" and not (
                model.get("dropout") or model.get("byte_fallback")
                or model.get("continuing_subword_prefix")
                or model.get("end_of_word_suffix")
            ) and all(token["special"] for token in added)
            specials = {token["content"]: token["id"] for token in added}
            merges = [_merge_strings(merge) for merge in model["merges"]]
            vocab = model["vocab"]
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path}: not a byte-level BPE tokenizer.json ({e!r})"
                            ) from None
        if not supported:
            raise UserError(f"{path}: only plain byte-level BPE is supported (no "
                            "normalizer but NFC, no dropout, byte fallback, subword "
                            "affixes or non-special added tokens)")
        return cls._from_strings(vocab, merges, specials, pattern, path, normalizer,
                                 bool(model.get("ignore_merges")))

    @classmethod
    def from_gpt2_files(
        cls, vocab_json: str | Path, merges_txt: str | Path, pattern: str = "gpt2"
    ) -> Tokenizer:
        """Read GPT-2's `vocab.json` + `merges.txt` (as written by Hugging Face).

        These files do not say which tokens are special. A token that is neither a
        single byte nor the result of a merge can never come out of BPE, so we take it
        to be a special token (GPT-2's `<|endoftext|>` is one).
        """
        vocab = _read_json(Path(vocab_json))
        if not isinstance(vocab, dict):
            raise UserError(f"{vocab_json}: expected a JSON object {{token: id}}")
        try:
            lines = Path(merges_txt).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise UserError(f"cannot read {merges_txt}: {e.strerror}") from None
        merges = [_merge_strings(line) for line in lines
                  if line.strip() and not line.startswith("#version")]
        reachable = {a + b for a, b in merges} | set(bytes_to_unicode().values())
        specials = {s: i for s, i in vocab.items() if s not in reachable}
        return cls._from_strings(vocab, merges, specials, pattern, Path(vocab_json))

    @classmethod
    def _from_strings(
        cls,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        specials: dict[str, int],
        pattern: str,
        path: Path,
        normalizer: str | None = None,
        ignore_merges: bool = False,
    ) -> Tokenizer:
        """Build from the string form used by GPT-2 / Hugging Face files."""
        try:
            ordinary = {i: _text_to_bytes(token) for token, i in vocab.items()
                        if token not in specials}
            merge_ids = {(vocab[a], vocab[b]): vocab[a + b] for a, b in merges}
        except KeyError as e:
            raise UserError(f"{path}: {e.args[0]!r} is not in the vocabulary, or is "
                            "not byte-level text; is this a byte-level BPE file?"
                            ) from None
        if len(merge_ids) != len(merges):
            raise UserError(f"{path}: a merge is listed twice")
        return cls(ordinary, merge_ids, specials, pattern, normalizer, ignore_merges)


def _pattern_regex(pattern: str) -> str:
    if pattern not in PATTERNS:
        raise UserError(f"unknown pre-tokenizer pattern {pattern!r}; "
                        f"choose one of {sorted(PATTERNS)}")
    return PATTERNS[pattern]


def _check_special_tokens(special_tokens: Sequence[str]) -> list[str]:
    specials = list(special_tokens)
    if isinstance(special_tokens, str) or not all(
        isinstance(s, str) and s for s in specials
    ):
        raise UserError(f"special_tokens={special_tokens!r} must be a list of "
                        "non-empty strings")
    if len(set(specials)) != len(specials):
        raise UserError(f"special_tokens={specials!r} lists a token twice")
    return specials


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def _bytes_to_text(token: bytes) -> str:
    return "".join(_BYTE_TO_CHAR[b] for b in token)


def _text_to_bytes(text: str) -> bytes:
    return bytes(_CHAR_TO_BYTE[c] for c in text)


def _merge_strings(merge: str | list[str]) -> tuple[str, str]:
    """A merge as stored in a file: "Ġ t" (merges.txt, older JSON) or ["Ġ", "t"]."""
    a, b = merge.split(" ") if isinstance(merge, str) else merge
    return a, b


def _hf_pattern(pre_tokenizer: dict) -> str:
    """Which of our `PATTERNS` a Hugging Face pre-tokenizer applies."""
    if pre_tokenizer["type"] == "ByteLevel" and pre_tokenizer["use_regex"] and (
        not pre_tokenizer["add_prefix_space"]
    ):
        return "gpt2"  # the ByteLevel pre-tokenizer's built-in regex is GPT-2's
    split, byte_level = pre_tokenizer["pretokenizers"]
    regex_text = split["pattern"]["Regex"]
    names = [name for name, text in PATTERNS.items() if text == regex_text]
    if split["type"] != "Split" or split["behavior"] != "Isolated" or (
        split["invert"] or byte_level["type"] != "ByteLevel"
    ) or byte_level["use_regex"] or byte_level["add_prefix_space"] or not names:
        raise ValueError("pre_tokenizer: expected Split(one of our patterns), "
                         "then ByteLevel")
    return names[0]


def _json_path(path: str | Path) -> Path:
    path = Path(path)
    return path / "tokenizer.json" if path.is_dir() else path


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); re-create it") from None
