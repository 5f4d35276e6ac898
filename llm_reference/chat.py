"""The chat template: how a conversation becomes one sequence of tokens.

A base model continues text; a chat model continues a *conversation*. We write a
conversation as text with special tokens marking each message (OpenAI's ChatML):

    <|im_start|>system
    You are terse.<|im_end|>
    <|im_start|>user
    Write the docstring for `def f(a, b=1)`.<|im_end|>
    <|im_start|>assistant
    Return a plus b.<|im_end|>

To ask the model for a reply we end with an open assistant header,
`<|im_start|>assistant\\n`, and generate until it writes `<|im_end|>`.

Fine-tuning teaches the model to write the assistant's turns, not to predict the
user's words, so `tokenize_chat` also returns a loss mask: 1 on the tokens the model
must learn to produce (each assistant reply and the `<|im_end|>` that closes it), 0
on everything else (headers, system and user messages).

This module is the one place the template lives: fine-tuning trains on
`tokenize_chat`, and the server builds prompts with `encode_chat`, so the two can
never disagree.
"""

from __future__ import annotations

from typing import Any

from .errors import UserError

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
ROLES = ("system", "user", "assistant")


def format_chat(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The conversation as ChatML text; optionally open the assistant's next turn.

    This is the text form, for reading and for tokenizers that parse special
    tokens out of text. To get token ids use `encode_chat`: it never lets a
    message's content smuggle in special tokens.
    """
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n"
                   for m in check_messages(messages))
    if add_generation_prompt:
        text += f"{IM_START}assistant\n"
    return text


def tokenize_chat(tokenizer: Any, messages: list[dict],
                  add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """Token ids of the conversation and its loss mask (1 = train on this token).

    Each message is `<|im_start|>` `role\\n` content `<|im_end|>` `\\n`. The content
    is encoded as plain text (special-token text inside it stays ordinary bytes,
    so a user cannot close a turn early). The mask is 1 on an assistant message's
    content tokens and on its closing `<|im_end|>`: that is what the model learns
    to write, including when to stop. Everything else is context, mask 0.
    """
    im_start, im_end = chat_token_ids(tokenizer)
    ids: list[int] = []
    mask: list[int] = []

    def add(new_ids: list[int], trained: bool) -> None:
        ids.extend(new_ids)
        mask.extend([int(trained)] * len(new_ids))

    for message in check_messages(messages):
        reply = message["role"] == "assistant"
        add([im_start, *tokenizer.encode(message["role"] + "\n")], trained=False)
        add(tokenizer.encode(message["content"]), trained=reply)
        add([im_end], trained=reply)
        add(tokenizer.encode("\n"), trained=False)
    if add_generation_prompt:
        add([im_start, *tokenizer.encode("assistant\n")], trained=False)
    return ids, mask


def encode_chat(tokenizer: Any, messages: list[dict],
                add_generation_prompt: bool = True) -> list[int]:
    """Prompt ids for a chat model: the conversation, then an open assistant turn.

    Generate from these ids and stop at the `<|im_end|>` token. A tokenizer without
    ChatML's tokens that carries its model's own template (an imported model's
    `HFTokenizer`) formats the conversation with that template instead.
    """
    template = getattr(tokenizer, "chat_template", None)
    if template is not None and IM_START not in tokenizer.special_tokens:
        return tokenizer.apply_chat_template(check_messages(messages),
                                             add_generation_prompt)
    return tokenize_chat(tokenizer, messages, add_generation_prompt)[0]


def chat_token_ids(tokenizer: Any) -> tuple[int, int]:
    """The ids of `<|im_start|>` and `<|im_end|>`; a UserError if either is missing."""
    specials = tokenizer.special_tokens
    missing = [t for t in (IM_START, IM_END) if t not in specials]
    if missing:
        raise UserError(f"the tokenizer has no {' or '.join(missing)} special token; "
                        "chat needs a tokenizer trained by `prepare`, which adds them")
    return specials[IM_START], specials[IM_END]


def check_messages(messages: Any, where: str = "messages") -> list[dict]:
    """Return `messages` if it is a list of {"role", "content"}; else a UserError."""
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: expected a non-empty list of "
                        '{"role": ..., "content": ...} objects')
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            raise UserError(f"{where}[{n}]: expected an object with role and content")
        if message.get("role") not in ROLES:
            raise UserError(f"{where}[{n}].role = {message.get('role')!r}: must be one "
                            f"of {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise UserError(f"{where}[{n}].content: must be a string")
    return messages
