"""Text generation: decoding strategies, stop conditions and the KV cache.

A language model gives a distribution over the next token; generating text is a loop
that picks one token, appends it and asks again. How we pick is the decoding
strategy:

- greedy (temperature 0): always the most likely token; deterministic, repetitive;
- temperature T: sample from softmax(logits / T); T < 1 sharpens, T > 1 flattens;
- top-k: sample only among the k most likely tokens;
- top-p (nucleus): sample among the fewest tokens whose probabilities sum to p.

Without a cache every step runs the model over the whole sequence again: O(T) work
per token for the layers, O(T^2) for attention. With a `KVCache` each step feeds
only the new token and reuses the keys and values of all earlier ones.

When the sequence outgrows the context, the model sees its last `context_length`
tokens. Without a cache that is a crop. A full cache cannot shift its positions
(learned or rotary), so it is emptied and refilled by re-reading the last window;
the output is the same as without a cache, but from then on every step costs a full
window again, like the uncached path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .errors import UserError
from .model import GPT, KVCache

# ------------------------------------------------------------------- sampling


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits (V,) or (B, V); set the rest to -inf."""
    k = min(k, logits.size(-1))
    kth_largest = torch.topk(logits, k).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the fewest most-likely tokens whose probabilities sum to at least p.

    Sort the probabilities in decreasing order; a token survives while the mass of
    the tokens before it is still below p (so the most likely one always does).
    """
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V)
    probs = F.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # (..., V)
    sorted_logits = sorted_logits.masked_fill(mass_before >= p, float("-inf"))
    return logits.scatter(-1, order, sorted_logits)  # back to vocabulary order


def sample_next(logits: torch.Tensor, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> int:
    """Pick the next token id from logits (V,)."""
    if temperature == 0:
        return int(logits.argmax())  # greedy
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits, dim=-1)  # (V,)
    return int(torch.multinomial(probs, 1, generator=generator))


def sample_rows(logits: torch.Tensor, temperature: torch.Tensor,
                top_k: torch.Tensor, top_p: torch.Tensor,
                uniform: torch.Tensor) -> torch.Tensor:
    """The next token (B,) of every row of logits (B, V), each with its own settings.

    A server samples for many sequences at once; calling `sample_next` per row costs
    a handful of small operations per row. Here every step is one operation for the
    whole batch. temperature (B,) (0: greedy), top_k (B,) (V: no limit) and top_p (B,)
    (1: no limit) hold each row's settings, filtered as in `top_k_filter` and then
    `top_p_filter` (ties at the k-th logit: exactly k survive).

    The draw is inverse transform sampling: with u uniform in [0, 1) (`uniform`, one
    per row, from the row's own generator if it has a seed), the token is the first
    whose cumulative probability exceeds u; token i wins with probability p_i.
    """
    V = logits.size(-1)
    logits = logits.float() / temperature.clamp_min(1e-6)[:, None]  # (B, V)
    if bool((top_k < V).any() | (top_p < 1).any()):
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        rank = torch.arange(V, device=logits.device)
        sorted_logits = sorted_logits.masked_fill(rank >= top_k[:, None],
                                                  float("-inf"))
        probs = F.softmax(sorted_logits, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # (B, V)
        sorted_logits = sorted_logits.masked_fill(mass_before >= top_p[:, None],
                                                  float("-inf"))
        logits = logits.scatter(-1, order, sorted_logits)
    cdf = F.softmax(logits, dim=-1).cumsum(dim=-1)  # (B, V)
    u = uniform[:, None] * cdf[:, -1:]  # (B, 1), below the total (~1)
    sampled = torch.searchsorted(cdf, u, right=True)[:, 0].clamp_max(V - 1)
    return torch.where(temperature == 0, logits.argmax(dim=-1), sampled)


# ---------------------------------------------------------------- the loop


@torch.inference_mode()
def next_token_logits(model: GPT, ids: list[int], n_new: int,
                      cache: KVCache | None) -> torch.Tensor:
    """Logits (V,) for the token after `ids`, whose last n_new the model has not seen.

    Without a cache we run the last context window; with one, only the new tokens,
    unless they would overflow it: then it is emptied and refilled with the window.
    """
    context = model.config.context_length
    if cache is None:
        new = ids[-context:]
    elif cache.pos + n_new <= context:
        new = ids[-n_new:]
    else:
        cache.reset()
        new = ids[-context:]
    idx = torch.tensor([new], device=model.tok_emb.weight.device)  # (1, T)
    logits, _ = model(idx, kv_cache=cache)  # (1, T, V)
    return logits[0, -1]


def generate(model: GPT, prompt_ids: Sequence[int], max_new_tokens: int,
             temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, stop_ids: Iterable[int] = (),
             stop: Sequence[str] = (), tokenizer: Any = None, seed: int | None = None,
             use_cache: bool = True) -> Iterator[int]:
    """Yield new token ids one by one (streaming), up to max_new_tokens.

    Generation ends early at a token in `stop_ids` (not yielded) or when the decoded
    new text contains one of the `stop` strings (needs `tokenizer`). Tokens that
    could be the start of a stop string are held back until that is settled; at a
    stop string, the tokens wholly before it are yielded (token granularity; see
    `generate_text` for an exact cut). `seed` makes sampling reproducible; greedy
    decoding (temperature 0) needs none. Options are checked at the call, before
    the first token. Given a `tokenizer`, ids it has no text for (an embedding
    padded past the vocabulary, as many open models have) are never picked.
    """
    _check_options(model, prompt_ids, max_new_tokens, temperature, top_k, top_p)
    if stop and tokenizer is None:
        raise ValueError("stop strings need a tokenizer to decode the text")
    return _generate(model, list(prompt_ids), max_new_tokens, temperature, top_k,
                     top_p, set(stop_ids), stop, tokenizer, seed, use_cache)


def _generate(model: GPT, ids: list[int], max_new_tokens: int, temperature: float,
              top_k: int | None, top_p: float | None, stop_ids: set[int],
              stop: Sequence[str], tokenizer: Any, seed: int | None,
              use_cache: bool) -> Iterator[int]:
    device = model.tok_emb.weight.device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    cache = None
    if use_cache:
        cache = KVCache(model.config, device=device, dtype=model.tok_emb.weight.dtype)
    was_training = model.training
    model.eval()
    try:
        n_new = len(ids)  # tokens the model has not seen yet: the whole prompt
        new_ids: list[int] = []  # generated so far
        sent = 0  # how many of new_ids were yielded
        # ids past the tokenizer's (an embedding padded for speed) have no text
        n_text = getattr(tokenizer, "vocab_size", None)
        for _ in range(max_new_tokens):
            logits = next_token_logits(model, ids, n_new, cache)[:n_text]
            token = sample_next(logits, temperature, top_k, top_p, generator)
            if token in stop_ids:
                break
            ids.append(token)
            new_ids.append(token)
            n_new = 1
            cut, ready = None, len(new_ids)
            if stop:
                cut, safe = find_stop(tokenizer.decode(new_ids), stop)
                ready = _tokens_within(tokenizer, new_ids, safe, start=sent)
            yield from new_ids[sent:ready]
            sent = ready
            if cut is not None:
                return
        yield from new_ids[sent:]  # ended without a stop string: release the rest
    finally:
        model.train(was_training)


def find_stop(text: str, stop: Sequence[str]) -> tuple[int | None, int]:
    """(index where the first stop string starts or None, length safe to emit).

    Without a match, the safe part excludes what the next tokens may still change:
    a trailing U+FFFD, the decoding of an unfinished UTF-8 character (byte-level BPE
    can split one across tokens), and before it the longest tail that is the
    beginning of a stop string.
    """
    found = [i for s in stop if (i := text.find(s)) >= 0]
    if found:
        return min(found), min(found)
    complete = text.rstrip("\ufffd")
    held = max((n for s in stop for n in range(1, len(s))
                if complete.endswith(s[:n])), default=0)
    return None, len(complete) - held


def _tokens_within(tokenizer: Any, ids: list[int], n_chars: int, start: int) -> int:
    """The most of ids (at least `start`) whose decoded text fits in n_chars."""
    n = start
    while n < len(ids) and len(tokenizer.decode(ids[:n + 1])) <= n_chars:
        n += 1
    return n


def generate_text(model: GPT, tokenizer: Any, prompt_ids: Sequence[int],
                  max_new_tokens: int, stop: Sequence[str] = (),
                  **options: Any) -> Iterator[str]:
    """Yield the new text in pieces as it is generated, cut exactly before a stop.

    Pieces never end inside a UTF-8 character or inside what may become a stop
    string (see `find_stop`). `options` are those of `generate`.
    """
    tokens = generate(model, prompt_ids, max_new_tokens, tokenizer=tokenizer,
                      **options)
    return _text_pieces(tokens, tokenizer, stop)


class TextStream:
    """Turns new token ids, one at a time, into text that is safe to show.

    A piece never ends inside a UTF-8 character or inside what may become a stop
    string (see `find_stop`); at a stop string the text is cut right before it and
    `stopped` is set. `ids` are the tokens added so far.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()):
        self.tokenizer, self.stop = tokenizer, stop
        self.ids: list[int] = []
        self.sent = 0  # characters handed out
        self.stopped = False

    def add(self, token: int) -> str:
        """The new piece of text that `token` makes safe ("" if none)."""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        cut, safe = find_stop(text, self.stop)
        if cut is not None:
            self.stopped = True
            safe = cut
        piece = text[self.sent:safe] if safe > self.sent else ""
        self.sent = max(self.sent, safe)
        return piece

    def flush(self) -> str:
        """At the end of generation: the text held back (none after a stop)."""
        if self.stopped:
            return ""
        piece = self.tokenizer.decode(self.ids)[self.sent:]
        self.sent += len(piece)
        return piece


def _text_pieces(tokens: Iterator[int], tokenizer: Any,
                 stop: Sequence[str]) -> Iterator[str]:
    stream = TextStream(tokenizer, stop)
    for token in tokens:
        if piece := stream.add(token):
            yield piece
        if stream.stopped:
            return
    if piece := stream.flush():
        yield piece


def _check_options(model: GPT, prompt_ids: Sequence[int], max_new_tokens: int,
                   temperature: float, top_k: int | None, top_p: float | None) -> None:
    vocab = model.config.vocab_size
    if not prompt_ids:
        raise UserError("prompt is empty: give at least one token")
    if any(not 0 <= i < vocab for i in prompt_ids):
        raise UserError(f"prompt has token ids outside the vocabulary [0, {vocab})")
    if max_new_tokens < 0:
        raise UserError(f"max_new_tokens = {max_new_tokens}: must be >= 0")
    if temperature < 0:
        raise UserError(f"temperature = {temperature}: must be >= 0 (0 = greedy)")
    if top_k is not None and top_k < 1:
        raise UserError(f"top_k = {top_k}: must be >= 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"top_p = {top_p}: must be in (0, 1]")
