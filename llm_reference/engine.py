"""The inference engine: one scheduler loop, continuous batching, a KV cache pool.

A request handler that runs each generation in its own thread makes every request
wait for all the others: N generations share the CPU or GPU and each of their steps
is a small, inefficient matrix product. An engine instead runs *one* loop, in one
thread, that owns the model. Each turn of the loop (`Engine.step`):

1. admits waiting sequences while a KV cache slot is free (`kv_pool.py`);
2. prefills: feeds at most `prefill_chunk` prompt tokens of new sequences, the
   short prompts together in one model call; a long prompt never stalls the others
   for long: it is cut into chunks fed over several steps (chunked prefill);
3. decodes: one token for *every* running sequence at once with `GPT.decode_step`,
   a batch whose rows sit at different positions;
4. samples the next token of every row at once (`generate.sample_rows`);
5. retires the sequences that ended (a stop token, a stop string, `max_tokens`, the
   end of the context) or whose client left, freeing their slots at once.

Sequences join and leave the batch at every step: continuous batching. The batch
costs little more than one sequence while the weights, not the arithmetic, are the
bottleneck, so throughput grows with the batch. Each sequence keeps its own
sampling parameters, random generator, stop strings and `max_tokens`.

A request that finds no free slot waits in a bounded queue; only when the queue is
full is it refused with 429 and `Retry-After` (OpenAI's clients retry by
themselves). A stream whose reader stops reading is paused, then cancelled
(`Engine._paused`): a slow client neither holds up the others nor makes the server
keep its text without bound. A prompt longer than the context can never run: 400.
`serve.py` is the HTTP face: it turns each request into `Job`s with `Engine.job`,
submits them with `Engine.start` and sends their text as it comes.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .chat import ENDOFTEXT, encode_chat
from .errors import UserError
from .generate import TextStream, sample_rows
from .kv_pool import KVPool
from .model import GPT
from .openai_schema import APIError, ChatMessage, SamplingRequest

DISCONNECT_CHECK_S = 0.1  # how often a waiting reader asks whether its client is gone


@dataclass
class ServerSettings:
    """What the operator decides when starting the server."""

    model_name: str
    max_tokens_cap: int = 512  # the most tokens one request may ask for
    max_concurrency: int = 16  # sequences decoded together: KV cache slots
    max_queue: int = 256  # sequences waiting for a slot; more get 429
    prefill_chunk: int = 256  # prompt tokens fed per scheduler step
    max_unread: int = 64  # pieces a stream's reader may leave unread; then it pauses
    wake_interval_s: float = 0.01  # readers are woken at most this often, but at
    # once for a request's first text and its end
    stall_timeout_s: float = 60.0  # a stream paused this long is cancelled
    max_body_bytes: int = 1 << 20  # larger request bodies get 413, unread
    api_key: str | None = None  # None: no authentication

    def check(self) -> None:
        if self.max_tokens_cap < 1:
            raise UserError(f"--max-tokens-cap {self.max_tokens_cap}: must be >= 1")
        if self.max_concurrency < 1:
            raise UserError(f"--max-concurrency {self.max_concurrency}: must be >= 1")
        if self.max_queue < 0:
            raise UserError(f"--max-queue {self.max_queue}: must be >= 0")
        if self.prefill_chunk < 1:
            raise UserError(f"--prefill-chunk {self.prefill_chunk}: must be >= 1")
        if self.max_unread < 1:
            raise UserError(f"max_unread {self.max_unread}: must be >= 1")
        if not self.model_name:
            raise UserError("--model-name: must not be empty")


@dataclass
class Job:
    """One validated request for the model: one sequence to generate."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int | None
    seed: int | None
    stop: list[str]  # stop strings: the text is cut right before one
    stop_ids: set[int]  # stop tokens: <|endoftext|>, and <|im_end|> for chat
    top_logprobs: int | None = None  # None: no logprobs; k: the k likeliest too


@dataclass
class TokenLogprob:
    """A generated token's log-probability, and the likeliest alternatives."""

    token: int
    logprob: float
    top: list[tuple[int, float]]  # (token, logprob), likeliest first


class Generation:
    """One sequence in the engine; its reader gets the text with `text()`.

    The scheduler thread decodes the new tokens into pieces of text; a piece never
    ends inside a UTF-8 character or inside what may become a stop string
    (`generate.find_stop`).

    Waking the event loop from another thread costs a system call and a hand-over
    of the GIL, which can take longer than a decode step. So `put` only notes that
    the reader needs waking (a streaming reader that has taken all there was, any
    reader at the end), and the scheduler wakes all the readers due with one call
    (`wake`): at once for a first text or an end, else at most every
    `wake_interval_s` (10 ms, smooth to a reader), so that a fast step hands several
    tokens over at a time.
    """

    END = object()  # the item after the last piece

    def __init__(self, job: Job, stream: bool, tokenizer: Any,
                 wake_scheduler: Callable[[], None]):
        self.job, self.stream = job, stream
        self.wake_scheduler = wake_scheduler  # after a pause or a cancellation
        self.text_stream = TextStream(tokenizer, job.stop)
        self.logprobs: list[TokenLogprob] = []
        self.finish_reason: str | None = None  # "stop" | "length"; None if cancelled
        self.cancelled = threading.Event()
        self.submitted = time.monotonic()
        self.first_token_s: float | None = None  # time to first token
        # the scheduler's bookkeeping
        self.slot: int | None = None
        self.pos = 0  # tokens in the slot's cache
        self.last_token: int | None = None  # sampled, not yet fed to the model
        self.paused_since: float | None = None  # its reader is too far behind
        # with a seed, its own random numbers: the same text in any batch
        self.random = None if job.seed is None else random.Random(job.seed)
        self._loop = asyncio.get_running_loop()
        self._items: list[Any] = []  # pieces not read yet, then END or an exception
        self._lock = threading.Lock()
        self._ready = asyncio.Event()  # set when _items may hold something
        self.wake_due = False  # a wake-up for the reader is waiting for `wake`
        self.wake_now = False  # ... and should not wait for the next interval
        self._handed = False  # whether any text was put yet

    @property
    def completion_tokens(self) -> int:
        return len(self.text_stream.ids)

    def unread(self) -> int:
        """Pieces handed over that the reader has not taken yet."""
        return len(self._items)

    def put(self, item: Any) -> None:
        """Hand a piece (or END, or an exception) to the reader; `wake` it later."""
        if item == "":
            return
        last = not isinstance(item, str)
        with self._lock:
            self._items.append(item)
            first = len(self._items) == 1  # else a wake-up is already on its way
        if last or (self.stream and first):
            self.wake_due = True
            # the first text and the end go out at once; the rest may wait a little
            self.wake_now = self.wake_now or last or not self._handed
        self._handed = True

    async def text(self, is_disconnected: Callable[[], Awaitable[bool]]
                   ) -> AsyncIterator[str]:
        """The new text as it comes; stops (and cancels) if the client went away."""
        try:
            while True:
                try:
                    await asyncio.wait_for(self._ready.wait(), DISCONNECT_CHECK_S)
                except asyncio.TimeoutError:
                    if await is_disconnected():
                        return
                    continue
                with self._lock:
                    items, self._items = self._items, []
                    self._ready.clear()
                if self.paused_since is not None:
                    self.wake_scheduler()  # room again: decode it on
                done = bool(items) and not isinstance(items[-1], str)
                text = "".join(items[:-1] if done else items)
                if text:
                    yield text
                if done:
                    if items[-1] is not self.END:
                        raise items[-1]  # the scheduler failed: a bug
                    return
        finally:  # also runs when the server cancels a stream whose client left
            self.cancelled.set()
            if self.finish_reason is None:
                self.wake_scheduler()  # free the slot now, even if paused

    def usage(self) -> dict[str, int]:
        prompt = len(self.job.prompt_ids)
        return {"prompt_tokens": prompt, "completion_tokens": self.completion_tokens,
                "total_tokens": prompt + self.completion_tokens}


@dataclass
class Stats:
    """Counters for /health and /metrics."""

    requests: dict[str, int] = field(default_factory=lambda: {
        "completed": 0, "cancelled": 0, "failed": 0, "rejected": 0})
    generated_tokens: int = 0
    prompt_tokens: int = 0
    first_token_s: list[float] = field(default_factory=list)  # of the last 1000
    started: float = field(default_factory=time.monotonic)


class Engine:
    """The model, its tokenizer, the KV cache pool and the scheduler loop."""

    def __init__(self, model: GPT, tokenizer: Any, settings: ServerSettings):
        settings.check()
        self.model, self.tokenizer, self.settings = model.eval(), tokenizer, settings
        self.created = int(time.time())
        self.pool = KVPool(model, settings.max_concurrency)
        self.device = model.tok_emb.weight.device
        self.waiting: deque[Generation] = deque()
        self.running: list[Generation] = []
        self.stats = Stats()
        self.random = random.Random()  # for the sequences without a seed
        self._woken = 0.0  # when the scheduler last woke the readers
        self._wake = threading.Condition()  # guards waiting, running and stats
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="scheduler",
                                         daemon=True)
        self._thread.start()

    # --- checks that turn a request into a Job

    def check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise APIError(404, f"model {name!r} does not exist; this server has "
                           f"{self.settings.model_name!r}", "model", "model_not_found")

    def check_prompt(self, prompt_ids: list[int]) -> list[int]:
        context, vocab = self.model.config.context_length, self.model.config.vocab_size
        if any(not 0 <= i < vocab for i in prompt_ids):
            raise APIError(400, f"prompt has token ids outside [0, {vocab})", "prompt")
        if len(prompt_ids) >= context:
            raise APIError(400, f"the prompt is {len(prompt_ids)} tokens; this model's "
                           f"context is {context} tokens, and it needs room for one "
                           "new token", "prompt", "context_length_exceeded")
        return prompt_ids

    def completion_prompt(self, prompt: str | list[int]) -> list[int]:
        """Token ids of a completion prompt; an empty one starts a new document."""
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else prompt
        if not ids:
            ids = [self.tokenizer.special_tokens[ENDOFTEXT]]
        return self.check_prompt(list(ids))

    def chat_prompt(self, messages: list[ChatMessage]) -> list[int]:
        try:
            ids = encode_chat(self.tokenizer, [m.model_dump() for m in messages])
        except UserError as e:
            raise APIError(400, str(e), "messages") from None
        return self.check_prompt(ids)

    def job(self, prompt_ids: list[int], body: SamplingRequest, max_tokens: int,
            stop_tokens: tuple[str, ...], top_logprobs: int | None = None,
            seed_offset: int = 0) -> Job:
        """The Job for a request: sampling defaults filled in, the cap enforced.

        A sequence ends at the end of the context (finish_reason "length") even
        before `max_tokens`: its slot holds `context_length` tokens. `seed_offset`
        gives each of a request's `n` choices its own random stream.
        """
        cap = self.settings.max_tokens_cap
        if max_tokens > cap:
            raise APIError(400, f"max_tokens = {max_tokens} is above this server's "
                           f"cap of {cap}", "max_tokens")
        room = self.model.config.context_length - len(prompt_ids)
        specials = self.tokenizer.special_tokens
        seed = None if body.seed is None else body.seed + seed_offset
        return Job(prompt_ids, min(max_tokens, room),
                   temperature=1.0 if body.temperature is None else body.temperature,
                   top_p=1.0 if body.top_p is None else body.top_p,
                   top_k=body.top_k, seed=seed,
                   stop=body.stop_list(),
                   stop_ids={specials[t] for t in stop_tokens if t in specials},
                   top_logprobs=top_logprobs)

    # --- submitting jobs (from the event loop)

    def start(self, job: Job, stream: bool) -> Generation:
        """Queue `job` for the scheduler, or refuse with 429 if the queue is full."""
        return self.start_all([job], stream)[0]

    def start_all(self, jobs: list[Job], stream: bool) -> list[Generation]:
        """Queue a request's jobs together: all of them, or none (429)."""
        generations = [Generation(job, stream, self.tokenizer, self.notify)
                       for job in jobs]
        with self._wake:
            free = self.settings.max_queue + len(self.pool.free) - len(self.waiting)
            if len(jobs) > free:
                self.stats.requests["rejected"] += 1
                raise APIError(429, f"the server is busy ({len(self.running)} running, "
                               f"{len(self.waiting)} waiting); retry shortly",
                               code="rate_limit_exceeded", type="rate_limit_error",
                               headers={"Retry-After": str(self.retry_after())})
            self.waiting.extend(generations)
            self._wake.notify()
        return generations

    def notify(self) -> None:
        """Wake the scheduler if it waits: a paused reader caught up or left."""
        with self._wake:
            self._wake.notify()

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved on: a guess from the throughput."""
        rate = self.tokens_per_second()
        per_sequence = self.settings.max_tokens_cap / 4  # a typical length, roughly
        if rate <= 0:
            return 1
        return max(1, math.ceil(len(self.waiting) * per_sequence / rate))

    # --- the scheduler loop (its own thread)

    def _loop(self) -> None:
        busy = True
        while True:
            with self._wake:
                while not (self._stopping or self.waiting or self.running):
                    self._wake.wait()
                if not busy:  # every sequence is paused: wait for a reader
                    self._wake.wait(DISCONNECT_CHECK_S)
                if self._stopping:
                    return
            try:
                with torch.inference_mode():  # no autograd bookkeeping
                    busy = self.step()
            except BaseException as e:  # a bug: every reader re-raises it (500)
                with self._wake:
                    failed, self.running = self.running, []
                for generation in failed:
                    self._free(generation, "failed")
                    generation.put(e)
                wake(failed)

    def step(self) -> bool:
        """One turn: admit, prefill, decode one token for all, sample, retire.
        Returns whether the model ran (False: every sequence is paused)."""
        running = self._admit()
        fed, sampling, logits = self._prefill(running)
        decoding = [g for g in running if g.last_token is not None
                    and g.finish_reason is None and not g.cancelled.is_set()
                    and not self._paused(g)]
        if decoding:
            sampling += decoding
            logits.append(self._decode(decoding))  # (B, V)
        if sampling:
            self._sample(sampling, torch.cat(logits))
        for generation in running:
            if generation.finish_reason is not None or generation.cancelled.is_set():
                self._retire(generation)
        busy = fed > 0 or bool(sampling)
        now = time.monotonic()
        if (not busy or now - self._woken >= self.settings.wake_interval_s
                or any(g.wake_now for g in running)):
            wake(running)
            self._woken = now
        return busy

    def _admit(self) -> list[Generation]:
        """Give waiting sequences the free slots; return all the running ones."""
        with self._wake:
            while self.waiting and self.pool.free:
                generation = self.waiting.popleft()
                if generation.cancelled.is_set():
                    self.stats.requests["cancelled"] += 1
                    continue
                generation.slot = self.pool.take()
                self.running.append(generation)
            return list(self.running)

    def _prefill(self, running: list[Generation]
                 ) -> tuple[int, list[Generation], list[torch.Tensor]]:
        """Feed at most `prefill_chunk` prompt tokens: new prompts that fit go in
        together, in one model call; a longer one goes in a chunk, more next turn.
        Returns the tokens fed, the sequences whose prompt is now all in, and
        their next-token logits (each (n, V))."""
        budget = self.settings.prefill_chunk
        whole, done, logits = [], [], []
        for generation in running:
            if budget == 0 or generation.last_token is not None:
                continue
            left = len(generation.job.prompt_ids) - generation.pos
            if generation.pos == 0 and left <= budget:
                whole.append(generation)
                budget -= left
                continue
            fed, last = self._prefill_chunk(generation, budget)
            budget -= fed
            if last is not None:
                done.append(generation)
                logits.append(last)
        if whole:
            done += whole
            logits.append(self._prefill_together(whole))
        return self.settings.prefill_chunk - budget, done, logits

    def _paused(self, generation: Generation) -> bool:
        """Whether a stream's reader is too far behind to decode it further: a
        client that stops reading must not make the server hold its text without
        bound. Paused too long, it is cancelled."""
        if not generation.stream or generation.unread() < self.settings.max_unread:
            generation.paused_since = None
            return False
        now = time.monotonic()
        if generation.paused_since is None:
            generation.paused_since = now
        elif now - generation.paused_since > self.settings.stall_timeout_s:
            generation.cancelled.set()
        return True

    def _prefill_chunk(self, generation: Generation, budget: int
                       ) -> tuple[int, torch.Tensor | None]:
        """Feed the next chunk of at most `budget` prompt tokens. Returns the
        chunk's length and, after the prompt's last chunk, the next token's
        logits (1, V)."""
        prompt = generation.job.prompt_ids
        chunk = prompt[generation.pos:generation.pos + budget]
        cache = self.pool.view(generation.slot, generation.pos)
        idx = torch.tensor([chunk], device=self.device)  # (1, T)
        logits, _ = self.model(idx, kv_cache=cache)  # (1, T, V)
        generation.pos += len(chunk)
        return len(chunk), logits[0, -1:] if generation.pos == len(prompt) else None

    def _prefill_together(self, batch: list[Generation]) -> torch.Tensor:
        """Feed whole prompts in one model call; return each one's next-token
        logits (B, V).

        The prompts are padded on the right to the longest: attention is causal,
        so no real token sees the padding. Their keys and values go to a scratch
        cache, then to their slots; the padding's land past each prompt, where
        decoding overwrites them before anything reads them.
        """
        prompts = [g.job.prompt_ids for g in batch]
        T = max(map(len, prompts))
        idx = torch.tensor([p + [0] * (T - len(p)) for p in prompts],
                           device=self.device)  # (B, T)
        scratch = self.pool.scratch(len(batch), T)
        logits, _ = self.model(idx, kv_cache=scratch)  # (B, T, V)
        self.pool.store([g.slot for g in batch], scratch)
        for generation in batch:
            generation.pos = len(generation.job.prompt_ids)
        last = torch.tensor([len(p) - 1 for p in prompts], device=self.device)
        return logits[torch.arange(len(batch), device=self.device), last]

    def _decode(self, batch: list[Generation]) -> torch.Tensor:
        """Logits (B, V) of the next token of every sequence, in one model call."""
        tokens = torch.tensor([g.last_token for g in batch], device=self.device)
        positions = torch.tensor([g.pos for g in batch], device=self.device)
        rows = torch.tensor([g.slot for g in batch], device=self.device)
        for generation in batch:
            generation.pos += 1
        return self.model.decode_step(tokens, positions, self.pool.cache, rows)

    def _sample(self, batch: list[Generation], logits: torch.Tensor) -> None:
        """Sample a token for every sequence of `batch` from logits (B, V) at once
        (`generate.sample_rows`), and pass its text on."""
        jobs = [g.job for g in batch]
        V = logits.size(-1)

        def column(values: list[float]) -> torch.Tensor:  # (B,)
            return torch.tensor(values, device=self.device)

        uniform = [(g.random or self.random).random() for g in batch]
        tokens = sample_rows(logits, column([j.temperature for j in jobs]),
                             column([j.top_k or V for j in jobs]),
                             column([j.top_p for j in jobs]), column(uniform))
        for generation, token, row in zip(batch, tokens.tolist(), logits):
            self._emit(generation, token, row)

    def _emit(self, generation: Generation, token: int,
              logits: torch.Tensor) -> None:
        """Pass the text of a new token on (logits (V,): for `logprobs`)."""
        job = generation.job
        if generation.first_token_s is None:
            generation.first_token_s = time.monotonic() - generation.submitted
        if token in job.stop_ids:
            generation.put(generation.text_stream.flush())
            generation.finish_reason = "stop"
            return
        if job.top_logprobs is not None:
            generation.logprobs.append(token_logprob(logits, token, job.top_logprobs))
        text = generation.text_stream
        generation.put(text.add(token))
        generation.last_token = token
        if text.stopped:  # a stop string: the text ends right before it
            generation.finish_reason = "stop"
        elif len(text.ids) == job.max_tokens:
            generation.put(text.flush())
            generation.finish_reason = "length"

    def _retire(self, generation: Generation) -> None:
        """Take an ended sequence out of the batch. Its slot is freed before the
        reader hears the end, so a client's next request finds it free."""
        with self._wake:
            self.running.remove(generation)
        ended = generation.finish_reason is not None
        self._free(generation, "completed" if ended else "cancelled")
        generation.put(Generation.END)

    def _free(self, generation: Generation, outcome: str) -> None:
        with self._wake:
            if generation.slot is not None:
                self.pool.give_back(generation.slot)
                generation.slot = None
            stats = self.stats
            stats.requests[outcome] += 1
            stats.generated_tokens += generation.completion_tokens
            stats.prompt_tokens += len(generation.job.prompt_ids)
            if generation.first_token_s is not None:
                stats.first_token_s = (stats.first_token_s
                                       + [generation.first_token_s])[-1000:]

    # --- reporting

    def tokens_per_second(self) -> float:
        """Generated tokens per second since the server started (ended sequences)."""
        elapsed = time.monotonic() - self.stats.started
        return self.stats.generated_tokens / elapsed if elapsed > 0 else 0.0

    def health(self) -> dict[str, Any]:
        with self._wake:
            return {"status": "ok", "model": self.settings.model_name,
                    "busy": len(self.running) + len(self.waiting),
                    "running": len(self.running), "waiting": len(self.waiting),
                    "max_concurrency": self.settings.max_concurrency,
                    "max_queue": self.settings.max_queue,
                    "requests": dict(self.stats.requests)}

    def metrics(self) -> str:
        """The counters in Prometheus' text format (for `GET /metrics`)."""
        with self._wake:
            stats = self.stats
            ttft = sorted(stats.first_token_s)
            lines = [
                ("llm_queue_length", "gauge", len(self.waiting)),
                ("llm_running", "gauge", len(self.running)),
                ("llm_free_slots", "gauge", len(self.pool.free)),
                ("llm_generated_tokens_total", "counter", stats.generated_tokens),
                ("llm_prompt_tokens_total", "counter", stats.prompt_tokens),
                ("llm_tokens_per_second", "gauge", round(self.tokens_per_second(), 3)),
                ("llm_time_to_first_token_p50_seconds", "gauge",
                 ttft[len(ttft) // 2] if ttft else 0.0),
            ]
            requests = dict(stats.requests)
        out = []
        for name, kind, value in lines:
            out += [f"# TYPE {name} {kind}", f"{name} {value}"]
        out.append("# TYPE llm_requests_total counter")
        out += [f'llm_requests_total{{outcome="{k}"}} {v}' for k, v in requests.items()]
        return "\n".join(out) + "\n"

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=5)


def wake(generations: list[Generation]) -> None:
    """Wake the readers that are due, with one call into each event loop."""
    due: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
    for generation in generations:
        if generation.wake_due:
            generation.wake_due = generation.wake_now = False
            due.setdefault(generation._loop, []).append(generation._ready)
    for loop, events in due.items():
        loop.call_soon_threadsafe(_set_all, events)


def _set_all(events: list[asyncio.Event]) -> None:
    for event in events:
        event.set()


def token_logprob(logits: torch.Tensor, token: int, k: int) -> TokenLogprob:
    """The log-probability of `token` under logits (V,), and the k likeliest."""
    logprobs = F.log_softmax(logits.float(), dim=-1)  # (V,)
    top = torch.topk(logprobs, k) if k > 0 else None
    pairs = [] if top is None else list(zip(top.indices.tolist(),
                                            top.values.tolist()))
    return TokenLogprob(token, float(logprobs[token]), pairs)
