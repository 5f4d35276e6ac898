"""The inference engine: one model shared by concurrent generations.

There is one model. Each request's generation runs in a worker
thread with its own KV cache and random generator; the weights are only read, so
threads can share them (PyTorch releases the GIL inside its kernels). At most
`max_concurrency` generations run at once; a request beyond that is refused at once
with 429 and `Retry-After`, rather than queued: a queue hides overload until clients
time out, a 429 tells them to back off now (OpenAI's clients retry it by
themselves). A client that disconnects stops its generation, which frees its
slot: a stream at the next token, a plain request within `DISCONNECT_CHECK_S`.

`serve.py` is the engine's HTTP face: it turns each request body into a `Job` with
`Engine.job`, starts it with `Engine.start` and sends its text as it comes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from .chat import ENDOFTEXT, encode_chat
from .errors import UserError
from .generate import TextStream, generate
from .model import GPT
from .openai_schema import APIError, ChatMessage, SamplingRequest

DISCONNECT_CHECK_S = 0.1  # how often a generation asks whether its client is gone


@dataclass
class ServerSettings:
    """What the operator decides when starting the server."""

    model_name: str
    max_tokens_cap: int = 512  # the most tokens one request may ask for
    max_concurrency: int = 4  # generations running at once; more get 429
    api_key: str | None = None  # None: no authentication

    def check(self) -> None:
        if self.max_tokens_cap < 1:
            raise UserError(f"--max-tokens-cap {self.max_tokens_cap}: must be >= 1")
        if self.max_concurrency < 1:
            raise UserError(f"--max-concurrency {self.max_concurrency}: must be >= 1")
        if not self.model_name:
            raise UserError("--model-name: must not be empty")


@dataclass
class Job:
    """One validated request for the model."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]  # stop strings: the text is cut right before one
    stop_ids: set[int]  # stop tokens: <|endoftext|>, and <|im_end|> for chat


class Generation:
    """A job running in a worker thread; read its text with `text()`.

    The thread decodes the new tokens into pieces of text; a piece never ends inside
    a UTF-8 character or inside what may become a stop string (`generate.find_stop`).
    It stops at a stop token, a stop string, `max_tokens`, or when `cancelled` is set
    because the reader went away.

    Waking the event loop from another thread costs a system call and a hand-over of
    the GIL, which on a busy machine can take longer than a small model's token. So
    the thread wakes the reader only when it must: a streaming reader when it has
    taken all there was (pieces that pile up meanwhile go out together), any reader
    at the end. While it waits, the reader checks every `DISCONNECT_CHECK_S` seconds
    whether its client went away.
    """

    END = object()  # the item after the last piece

    def __init__(self, job: Job, stream: bool):
        self.job, self.stream = job, stream
        self.completion_tokens = 0
        self.finish_reason: str | None = None  # "stop" | "length"; None if cancelled
        self.cancelled = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._items: list[Any] = []  # pieces not read yet, then END or an exception
        self._lock = threading.Lock()
        self._ready = asyncio.Event()  # set when _items may hold something

    def run(self, model: GPT, tokenizer: Any) -> None:
        """Generate and decode (in the worker thread)."""
        job = self.job
        text = TextStream(tokenizer, job.stop)
        with closing(generate(model, job.prompt_ids, job.max_tokens,
                              temperature=job.temperature, top_p=job.top_p,
                              stop_ids=job.stop_ids, seed=job.seed)) as tokens:
            for token in tokens:
                if self.cancelled.is_set():
                    break
                self.put(text.add(token))
                if text.stopped:  # a stop string: the text ends right before it
                    self.finish_reason = "stop"
                    break
            else:  # ended at a stop token or at max_tokens: release the held text
                self.put(text.flush())
                full = len(text.ids) == job.max_tokens
                self.finish_reason = "length" if full else "stop"
        self.completion_tokens = len(text.ids)  # the engine then puts END

    def put(self, item: Any) -> None:
        """Hand a piece (or END, or an exception) to the reader (any thread)."""
        if item == "":
            return
        last = not isinstance(item, str)
        with self._lock:
            self._items.append(item)
            first = len(self._items) == 1  # else a wake-up is already on its way
        if last or (self.stream and first):
            self._loop.call_soon_threadsafe(self._ready.set)

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
                done = bool(items) and not isinstance(items[-1], str)
                text = "".join(items[:-1] if done else items)
                if text:
                    yield text
                if done:
                    if items[-1] is not self.END:
                        raise items[-1]  # the worker failed: a bug
                    return
        finally:  # also runs when the server cancels a stream whose client left
            self.cancelled.set()

    def usage(self) -> dict[str, int]:
        prompt = len(self.job.prompt_ids)
        return {"prompt_tokens": prompt, "completion_tokens": self.completion_tokens,
                "total_tokens": prompt + self.completion_tokens}


class Engine:
    """The model, its tokenizer and the slots that bound concurrent generations."""

    def __init__(self, model: GPT, tokenizer: Any, settings: ServerSettings):
        settings.check()
        self.model, self.tokenizer, self.settings = model.eval(), tokenizer, settings
        self.created = int(time.time())
        self.pool = ThreadPoolExecutor(settings.max_concurrency,
                                       thread_name_prefix="generate")
        self._lock = threading.Lock()
        self.busy = 0  # generations running
        self.counts = {"completed": 0, "cancelled": 0, "failed": 0, "rejected": 0}

    # --- checks that turn a request into a Job

    def check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise APIError(404, f"model {name!r} does not exist; this server has "
                           f"{self.settings.model_name!r}", "model", "model_not_found")

    def check_prompt(self, prompt_ids: list[int]) -> list[int]:
        context, vocab = self.model.config.context_length, self.model.config.vocab_size
        if any(not 0 <= i < vocab for i in prompt_ids):
            raise APIError(400, f"prompt has token ids outside [0, {vocab})", "prompt")
        if len(prompt_ids) > context:
            raise APIError(400, f"the prompt is {len(prompt_ids)} tokens; this model's "
                           f"context is {context} tokens", "prompt",
                           "context_length_exceeded")
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
            stop_tokens: tuple[str, ...]) -> Job:
        """The Job for a request: sampling defaults filled in, the cap enforced."""
        cap = self.settings.max_tokens_cap
        if max_tokens > cap:
            raise APIError(400, f"max_tokens = {max_tokens} is above this server's "
                           f"cap of {cap}", "max_tokens")
        specials = self.tokenizer.special_tokens
        return Job(prompt_ids, max_tokens,
                   temperature=1.0 if body.temperature is None else body.temperature,
                   top_p=1.0 if body.top_p is None else body.top_p, seed=body.seed,
                   stop=body.stop_list(),
                   stop_ids={specials[t] for t in stop_tokens if t in specials})

    # --- running jobs

    def start(self, job: Job, stream: bool) -> Generation:
        """Start `job` in a worker thread, or refuse with 429 if all slots are busy."""
        with self._lock:
            if self.busy >= self.settings.max_concurrency:
                self.counts["rejected"] += 1
                raise APIError(429, f"the server is busy ({self.busy} requests "
                               "running); retry shortly", code="rate_limit_exceeded",
                               type="rate_limit_error", headers={"Retry-After": "1"})
            self.busy += 1
        generation = Generation(job, stream)
        try:
            self.pool.submit(self._work, generation)
        except BaseException:  # the pool is shut down: the server is stopping
            self._release("failed")
            raise
        return generation

    def _work(self, generation: Generation) -> None:
        """Run a generation (in a worker thread). Its slot is freed before the reader
        hears the end, so a client that sends its next request at once finds it free."""
        try:
            generation.run(self.model, self.tokenizer)
        except BaseException as e:  # a bug: the reader re-raises it (500, logged)
            self._release("failed")
            generation.put(e)
            return
        self._release("cancelled" if generation.finish_reason is None else "completed")
        generation.put(Generation.END)

    def _release(self, outcome: str) -> None:
        with self._lock:
            self.busy -= 1
            self.counts[outcome] += 1

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {"status": "ok", "model": self.settings.model_name,
                    "busy": self.busy, "max_concurrency": self.settings.max_concurrency,
                    "requests": dict(self.counts)}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
