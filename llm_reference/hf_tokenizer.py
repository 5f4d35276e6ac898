"""Tokenizers we do not implement, read through Hugging Face's `tokenizers` library.

Our `Tokenizer` (tokenizer.py) is byte-level BPE, the scheme of GPT-2, Llama 3 and
Qwen, written from scratch because the book teaches it. Other open models use
SentencePiece-style tokenizers (Llama 2, Mistral 7B v0.1, Gemma): spaces become "▁"
(the `Metaspace` pre-tokenizer), and characters missing from the vocabulary fall
back to byte tokens `<0x41>` (`byte_fallback`). Their `tokenizer.json` is exact and
complete, so instead of a second implementation `HFTokenizer` runs it with the
`tokenizers` library behind the interface the commands use: `encode` (with the same
`allowed_special` rule: special-token text in a prompt stays ordinary text unless
allowed), `decode`, `special_tokens`, `vocab_size`, `save` and `load`.

`artifacts.read_tokenizer` picks the class: ours when it can read the file, else
this one. `import --hf` keeps such a folder's tokenizer.json as it is, and its
tokenizer_config.json beside it, whose Jinja `chat_template` is the model's own
chat format (Llama 2's `[INST]`, say): `apply_chat_template` renders it as
transformers does, and `chat.encode_chat` uses it for a tokenizer without ChatML's
tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import regex

from .atomic import write_json, write_text
from .errors import UserError

CONFIG = "tokenizer_config.json"  # beside tokenizer.json: the chat template


class HFTokenizer:
    """A `tokenizers.Tokenizer` with our Tokenizer's interface."""

    def __init__(self, backend: Any, config: dict[str, Any] | None = None):
        """`config`: the model's tokenizer_config.json (its chat template and the
        text of its BOS and EOS tokens), when it has one."""
        from tokenizers import Tokenizer as Backend

        self.backend = backend  # finds special tokens in the text
        self.plain = Backend.from_str(backend.to_str())  # reads them as text
        self.plain.encode_special_tokens = True
        added = backend.get_added_tokens_decoder()  # {id: AddedToken}
        self.special_tokens = {t.content: i for i, t in added.items() if t.special}
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self.config = config or {}
        template = self.config.get("chat_template")
        if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
            template = {t["name"]: t["template"] for t in template}.get("default")
        self.chat_template: str | None = template

    @property
    def vocab(self) -> dict[str, int]:
        """Token text -> id, added tokens included (for comparing tokenizers)."""
        return self.backend.get_vocab(with_added_tokens=True)

    def encode(self, text: str, allowed_special: Any = "none") -> list[int]:
        """Text -> ids, no BOS added. Special tokens come only from the texts
        `allowed_special` names: "none", "all" or a set of special tokens."""
        if allowed_special == "none" or allowed_special == set():
            return self._encode(text, specials=False)
        if allowed_special == "all" or allowed_special == set(self.special_tokens):
            return self._encode(text, specials=True)
        if not isinstance(allowed_special, (set, frozenset)) or not (
                set(allowed_special) <= set(self.special_tokens)):
            raise UserError(f"allowed_special={allowed_special!r}: use 'none', 'all' "
                            f"or a set of {sorted(self.special_tokens)}")
        by_length = sorted(allowed_special, key=len, reverse=True)
        parts = regex.split(f"({'|'.join(map(regex.escape, by_length))})", text)
        ids: list[int] = []
        for n, part in enumerate(parts):  # odd positions hold the special tokens
            ids += [self.special_tokens[part]] if n % 2 else self._encode(
                part, specials=False)
        return ids

    def _encode(self, text: str, specials: bool) -> list[int]:
        backend = self.backend if specials else self.plain
        return backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text, special tokens included as their text."""
        ids = list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise UserError(f"token id {bad[0]!r} is not in this tokenizer (ids "
                            f"0..{self.vocab_size - 1})")
        return self.backend.decode(ids, skip_special_tokens=False)

    def apply_chat_template(self, messages: list[dict],
                            add_generation_prompt: bool = True) -> list[int]:
        """Ids of the conversation in the model's own chat format: its Jinja
        template rendered in a sandbox, as transformers renders it, then encoded
        with the special tokens the template wrote."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        if self.chat_template is None:
            raise UserError("this tokenizer has no chat template (no "
                            "tokenizer_config.json with chat_template beside it)")

        def raise_exception(message: str) -> None:
            raise UserError(f"the model's chat template refuses: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        text = env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self._token_text("bos_token"),
            eos_token=self._token_text("eos_token"))
        return self.encode(text, "all")

    def _token_text(self, key: str) -> str:
        token = self.config.get(key) or ""
        return token["content"] if isinstance(token, dict) else token

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def to_hf_dict(self) -> dict:
        return json.loads(self.backend.to_str())

    def save(self, path: str | Path) -> None:
        """Write the tokenizer.json as `tokenizers` serialises it, and the
        tokenizer_config.json it came with beside it."""
        path = Path(path)
        path = path / "tokenizer.json" if path.is_dir() else path
        write_text(path, self.backend.to_str(pretty=True))
        if self.config:
            write_json(path.with_name(CONFIG), self.config)

    @classmethod
    def load(cls, path: str | Path) -> HFTokenizer:
        from tokenizers import Tokenizer as Backend

        path = Path(path)
        path = path / "tokenizer.json" if path.is_dir() else path
        try:
            backend = Backend.from_file(str(path))
        except Exception as e:  # the Rust library raises plain Exceptions
            raise UserError(f"{path}: the tokenizers library cannot read it "
                            f"({str(e).splitlines()[0]})") from None
        config = None
        if path.with_name(CONFIG).is_file():
            try:
                config = json.loads(path.with_name(CONFIG).read_text("utf-8"))
            except json.JSONDecodeError as e:
                raise UserError(f"{path.with_name(CONFIG)} is not valid JSON ({e})"
                                ) from None
        return cls(backend, config)

