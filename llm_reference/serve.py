"""An OpenAI-compatible HTTP server for a trained run.

Speaking OpenAI's protocol means every OpenAI client library, and the many tools
built on them, can talk to our model by changing one base URL:

    GET  /health                  liveness, busy slots, request counters
    GET  /v1/models               the one model this server holds
    POST /v1/completions          continue a prompt (text or token ids)
    POST /v1/chat/completions     reply to a conversation (the chat template)

Both POST endpoints take `max_tokens`, `temperature`, `top_p`, `stop` (a string or
a list), `seed` and `stream`. With `stream: true` the reply is Server-Sent Events:
one `data: {json chunk}` per piece of text, then a chunk with the `finish_reason`,
then `data: [DONE]`. `usage` counts prompt and completion tokens.

**Concurrency.** There is one model. Each request's generation runs in a worker
thread with its own KV cache and random generator; the weights are only read, so
threads can share them (PyTorch releases the GIL inside its kernels). At most
`max_concurrency` generations run at once; a request beyond that is refused at once
with 429 and `Retry-After`, rather than queued: a queue hides overload until clients
time out, a 429 tells them to back off now (OpenAI's clients retry it by
themselves). A client that disconnects stops its generation, which frees its
slot: a stream at the next token, a plain request within `DISCONNECT_CHECK_S`.

**Safety.** The server binds 127.0.0.1 unless told otherwise; an API key
(`--api-key` or `LLM_API_KEY`) makes every /v1 request show
`Authorization: Bearer KEY`. Every request is validated before it reaches the
model (types, ranges, prompt length, `max_tokens` cap): a bad request gets a 4xx
with OpenAI's error body `{"error": {"message", "type", "param", "code"}}` and the
server carries on.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

from .chat import ENDOFTEXT, IM_END, encode_chat
from .errors import UserError
from .generate import TextStream, generate
from .model import GPT

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default max_tokens for /v1/completions
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


# ------------------------------------------------------------------------ errors


class APIError(Exception):
    """An error the client caused, sent as OpenAI's error body with `status`."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.code, self.type, self.headers = code, type, headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def validation_error(exc: RequestValidationError) -> APIError:
    """The first problem pydantic found, with its field named like `messages.0.role`."""
    error = exc.errors()[0]
    param = ".".join(str(part) for part in error["loc"] if part != "body") or None
    if error["type"] == "json_invalid":
        return APIError(400, f"the body is not valid JSON: {error['msg']}")
    if param is None:
        return APIError(400, "the body must be a JSON object, sent with "
                        "'Content-Type: application/json'")
    message = error["msg"].removeprefix("Value error, ")
    return APIError(400, f"{param}: {message}", param=param)


# ---------------------------------------------------------------- request bodies


class StreamOptions(BaseModel):
    include_usage: bool = False  # send a last chunk with `usage`


class SamplingRequest(BaseModel):
    """The fields both endpoints share. `None` means the default, as in OpenAI's API;
    unknown fields (logprobs, user, ...) are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)  # 0 = greedy
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-2**63, lt=2**64)  # torch's seed range
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None

    @field_validator("n")
    @classmethod
    def only_one_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("only n=1 is supported")
        return n

    @field_validator("stop")
    @classmethod
    def stop_strings(cls, stop: str | list[str] | None) -> str | list[str] | None:
        strings = [stop] if isinstance(stop, str) else stop or []
        if len(strings) > 4 or not all(strings):
            raise ValueError("at most 4 stop strings, none of them empty")
        return stop

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(SamplingRequest):
    prompt: str | list[int]  # text, or token ids


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    role: str  # system | user | assistant (checked by chat.encode_chat)
    content: str


class ChatRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # newer name of max_tokens


# ---------------------------------------------------------------------- the engine


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
                              stop_ids=job.stop_ids, seed=job.seed,
                              tokenizer=tokenizer)) as tokens:
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


# ------------------------------------------------------------------------ responses


def response_meta(engine: Engine, kind: str) -> dict[str, Any]:
    """The fields every response and chunk of one request share."""
    prefix = {"text_completion": "cmpl", "chat.completion": "chatcmpl"}[kind]
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind,
            "created": int(time.time()), "model": engine.settings.model_name}


def sse(data: dict[str, Any] | str) -> str:
    """One Server-Sent Event: `data: ...` and a blank line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def event_stream(meta: dict[str, Any], generation: Generation,
                       pieces: AsyncIterator[str],
                       choice: Callable[[str | None, str | None], dict],
                       include_usage: bool, head: dict | None = None
                       ) -> AsyncIterator[str]:
    """The SSE body: a chunk per piece of text, a last chunk with the finish reason,
    optionally one with `usage`, then `[DONE]`. `choice(text, finish_reason)` shapes
    a chunk's choice for the endpoint (`text` for completions, `delta` for chat);
    `head` is a choice to send first (chat's `role`)."""
    if head is not None:
        yield sse({**meta, "choices": [head]})
    async for piece in pieces:
        yield sse({**meta, "choices": [choice(piece, None)]})
    yield sse({**meta, "choices": [choice(None, generation.finish_reason)]})
    if include_usage:
        yield sse({**meta, "choices": [], "usage": generation.usage()})
    yield sse("[DONE]")


def stream_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


# -------------------------------------------------------------------- endpoints


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def check_api_key(request: Request) -> None:
    """With an API key set, every /v1 request must carry `Authorization: Bearer KEY`."""
    key = get_engine(request).settings.api_key
    if key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(),
                                                             key.encode()):
        raise APIError(401, "missing or incorrect API key; send the header "
                       "'Authorization: Bearer KEY'", code="invalid_api_key")


router = APIRouter(prefix="/v1", dependencies=[Depends(check_api_key)])


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    engine = get_engine(request)
    return {"object": "list", "data": [model_card(engine)]}


@router.get("/models/{name}")
async def retrieve_model(name: str, request: Request) -> dict[str, Any]:
    engine = get_engine(request)
    engine.check_model(name)
    return model_card(engine)


def model_card(engine: Engine) -> dict[str, Any]:
    return {"id": engine.settings.model_name, "object": "model",
            "created": engine.created, "owned_by": "llm-reference"}


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    """Continue `prompt`; stop at <|endoftext|>, a stop string or max_tokens."""
    engine = get_engine(request)
    engine.check_model(body.model)
    prompt_ids = engine.completion_prompt(body.prompt)
    max_tokens = body.max_tokens or min(DEFAULT_COMPLETION_TOKENS,
                                        engine.settings.max_tokens_cap)
    job = engine.job(prompt_ids, body, max_tokens, stop_tokens=(ENDOFTEXT,))
    generation = engine.start(job, bool(body.stream))
    pieces = generation.text(request.is_disconnected)
    meta = response_meta(engine, "text_completion")

    def choice(text: str | None, finish_reason: str | None) -> dict[str, Any]:
        return {"index": 0, "text": text or "", "logprobs": None,
                "finish_reason": finish_reason}

    if body.stream:
        return stream_response(event_stream(meta, generation, pieces, choice,
                                            body.include_usage()))
    text = "".join([piece async for piece in pieces])
    return {**meta, "choices": [choice(text, generation.finish_reason)],
            "usage": generation.usage()}


@router.post("/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Any:
    """Reply as the assistant; stop at <|im_end|>, a stop string or max_tokens."""
    engine = get_engine(request)
    engine.check_model(body.model)
    prompt_ids = engine.chat_prompt(body.messages)
    max_tokens = (body.max_completion_tokens or body.max_tokens
                  or engine.settings.max_tokens_cap)
    job = engine.job(prompt_ids, body, max_tokens, stop_tokens=(IM_END, ENDOFTEXT))
    generation = engine.start(job, bool(body.stream))
    pieces = generation.text(request.is_disconnected)
    meta = response_meta(engine, "chat.completion")

    def delta(text: str | None, finish_reason: str | None) -> dict[str, Any]:
        return {"index": 0, "delta": {} if text is None else {"content": text},
                "logprobs": None, "finish_reason": finish_reason}

    if body.stream:
        meta["object"] = "chat.completion.chunk"
        role = {**delta("", None), "delta": {"role": "assistant", "content": ""}}
        return stream_response(event_stream(meta, generation, pieces, delta,
                                            body.include_usage(), head=role))
    text = "".join([piece async for piece in pieces])
    message = {"role": "assistant", "content": text}
    return {**meta, "choices": [{"index": 0, "message": message, "logprobs": None,
                                 "finish_reason": generation.finish_reason}],
            "usage": generation.usage()}


# ------------------------------------------------------------------------ the app


def create_app(engine: Engine) -> FastAPI:
    """The FastAPI application around one engine."""
    app = FastAPI(title="llm-reference", docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.include_router(router)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return engine.health()

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request,
                              exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return APIError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return APIError(500, f"internal error: {type(exc).__name__}",
                        type="server_error").response()

    return app


def uvicorn_server(app: FastAPI, log_level: str = "info") -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level,
                                         timeout_graceful_shutdown=5))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free port (read it from getsockname).

    We say proto=IPPROTO_TCP so that asyncio switches Nagle's algorithm off on each
    connection (TCP_NODELAY). With it on, the body of a reply, written after its
    headers, waits for the client's delayed ACK: up to 40 ms per request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}; choose "
                        "another --port (0 picks a free one) or --host") from None
    return sock


@dataclass
class BackgroundServer:
    """Serve `app` from a thread on a free loopback port (tests, benchmarks, book):

        with BackgroundServer(create_app(engine)) as server:
            OpenAI(base_url=server.url + "/v1", api_key="none")
    """

    app: FastAPI
    host: str = "127.0.0.1"
    server: uvicorn.Server = field(init=False)
    thread: threading.Thread = field(init=False)
    url: str = field(init=False, default="")

    def __enter__(self) -> BackgroundServer:
        sock = bind(self.host, 0)
        self.url = f"http://{self.host}:{sock.getsockname()[1]}"
        self.server = uvicorn_server(self.app, log_level="warning")
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread died while starting")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# --------------------------------------------------------------------- command


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR",
                        help="run folder written by `train` (or `finetune`); on the "
                             "command line also a quantized, release or HF folder")
    parser.add_argument("--step", type=int, metavar="N",
                        help="serve the checkpoint of step N (default: the latest)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine "
                             "only; 0.0.0.0 exposes the server to the network: set "
                             "an API key)")
    parser.add_argument("--port", type=int, default=8000,
                        help="port to listen on; 0 picks a free one (default: 8000)")
    parser.add_argument("--api-key", default=os.environ.get("LLM_API_KEY"),
                        help="require 'Authorization: Bearer KEY' on /v1 requests "
                             "(default: the LLM_API_KEY environment variable, which "
                             "unlike this option is not visible in `ps`)")
    parser.add_argument("--max-tokens-cap", type=int, default=512, metavar="N",
                        help="the most tokens one request may generate; larger "
                             "max_tokens get 400 (default: 512)")
    parser.add_argument("--max-concurrency", type=int, default=4, metavar="N",
                        help="generations running at once; more requests get 429 "
                             "with Retry-After (default: 4)")
    parser.add_argument("--model-name", metavar="NAME",
                        help="the model id clients pass as `model` (default: the "
                             "run folder's name)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda[:N] or mps (default: auto)")


def run(args: argparse.Namespace, load_model: Callable | None = None) -> int:
    """The command; `load_model(path, step, device)` reads the model folder
    (default: a run's checkpoint)."""
    from .config import resolve_device

    if load_model is None:
        from .checkpoint import load_model

    settings = ServerSettings(
        model_name=args.model_name or Path(args.run).resolve().name,
        max_tokens_cap=args.max_tokens_cap, max_concurrency=args.max_concurrency,
        api_key=args.api_key or None)
    settings.check()
    if not is_loopback(args.host) and settings.api_key is None:
        print(f"warning: listening on {args.host} without an API key: anyone who can "
              "reach this port can use the model; set LLM_API_KEY", file=sys.stderr)
    device = resolve_device(args.device)
    model, tokenizer, info = load_model(args.run, args.step, device=str(device))
    engine = Engine(model, tokenizer, settings)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    kind = info.get("kind", "run")
    source = f"step {info['step']}" if kind == "run" else f"{kind} folder"
    print(f"serving {settings.model_name!r} ({source}, {device}) at "
          f"http://{host}:{port}/v1", flush=True)
    try:
        uvicorn_server(create_app(engine)).run(sockets=[sock])
    finally:
        engine.close()
    return 0
