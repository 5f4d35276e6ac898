"""An OpenAI-compatible HTTP server for a trained run.

Speaking OpenAI's protocol means every OpenAI client library, and the many tools
built on them, can talk to our model by changing one base URL:

    GET  /health                  liveness, running and waiting, request counters
    GET  /metrics                 the same and more in Prometheus' text format
    GET  /v1/models               the one model this server holds
    POST /v1/completions          continue prompts (text or token ids, or lists)
    POST /v1/chat/completions     reply to a conversation (the chat template)

Both POST endpoints take `max_tokens`, `temperature`, `top_p`, `stop` (a string or
a list), `seed`, `n` (choices per prompt), `logprobs` and `stream`. With
`stream: true` the reply is Server-Sent Events: one `data: {json chunk}` per piece
of text of a choice (its `index` says which), a chunk with each choice's
`finish_reason`, then `data: [DONE]`. `usage` counts prompt and completion tokens.

**Safety.** The server binds 127.0.0.1 unless told otherwise; an API key
(`--api-key` or `LLM_API_KEY`) makes every /v1 request, /metrics and the API's
own description (/openapi.json, /docs) show `Authorization: Bearer KEY`. A body
over `max_body_bytes` is refused (413) before it is read. Every request is
validated before it reaches the model (types, ranges, prompt length, `max_tokens`
cap): a bad request gets a 4xx with OpenAI's error body
`{"error": {"message", "type", "param", "code"}}` and the server carries on.

The request bodies are in `openai_schema.py`; the engine that batches the
generations, and queues requests or refuses them with 429, is in `engine.py`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from starlette.exceptions import HTTPException

from .chat import ENDOFTEXT, IM_END
from .engine import Engine, Generation, Job
from .errors import UserError
from .openai_schema import (
    APIError,
    ChatRequest,
    CompletionRequest,
    SamplingRequest,
    validation_error,
)

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default max_tokens for /v1/completions


# ------------------------------------------------------------------------ responses


def response_meta(engine: Engine, kind: str) -> dict[str, Any]:
    """The fields every response and chunk of one request share."""
    prefix = {"text_completion": "cmpl", "chat.completion": "chatcmpl"}[kind]
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind,
            "created": int(time.time()), "model": engine.settings.model_name}


def sse(data: dict[str, Any] | str) -> str:
    """One Server-Sent Event: `data: ...` and a blank line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def merged(generations: list[Generation],
                 is_disconnected: Callable[[], Awaitable[bool]]
                 ) -> AsyncIterator[tuple[int, str | None]]:
    """(choice index, piece) from all generations as they come; (index, None) when
    one ends. Leaving early cancels them all (their `text` sets `cancelled`).

    The queue between the readers and the response is small: when the client stops
    reading, the response stops taking pieces, so do the readers, and the engine
    pauses the generations whose unread text piles up (`Engine._paused`).
    """
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=len(generations))

    async def read(index: int, generation: Generation) -> None:
        try:
            async for piece in generation.text(is_disconnected):
                await queue.put((index, piece))
            await queue.put((index, None))
        except Exception as e:  # the scheduler failed: the reader raises it
            await queue.put((index, e))

    tasks = [asyncio.create_task(read(i, g)) for i, g in enumerate(generations)]
    try:
        ended = 0
        while ended < len(tasks):
            index, item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            ended += item is None
            yield index, item
    finally:
        for task in tasks:
            task.cancel()


async def event_stream(meta: dict[str, Any], generations: list[Generation],
                       pieces: AsyncIterator[tuple[int, str | None]],
                       choice: Callable[[int, str | None, str | None], dict],
                       include_usage: bool, head: Callable[[int], dict] | None = None
                       ) -> AsyncIterator[str]:
    """The SSE body: a chunk per piece of text, a chunk with each choice's finish
    reason as it ends, optionally one with `usage`, then `[DONE]`.
    `choice(index, text, finish_reason)` shapes a chunk's choice for the endpoint
    (`text` for completions, `delta` for chat); `head(index)` is a choice to send
    first (chat's `role`)."""
    if head is not None:
        for index in range(len(generations)):
            yield sse({**meta, "choices": [head(index)]})
    async for index, piece in pieces:
        reason = generations[index].finish_reason if piece is None else None
        yield sse({**meta, "choices": [choice(index, piece, reason)]})
    if include_usage:
        yield sse({**meta, "choices": [], "usage": usage(generations)})
    yield sse("[DONE]")


def stream_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def whole_texts(generations: list[Generation],
                      is_disconnected: Callable[[], Awaitable[bool]]) -> list[str]:
    """Each generation's full text (for a reply that is not streamed)."""
    texts = [""] * len(generations)
    async for index, piece in merged(generations, is_disconnected):
        texts[index] += piece or ""
    return texts


def usage(generations: list[Generation]) -> dict[str, int]:
    """Token counts of a request: each prompt once, all choices' completions."""
    prompts = {id(g.job.prompt_ids): len(g.job.prompt_ids) for g in generations}
    completion = sum(g.completion_tokens for g in generations)
    prompt = sum(prompts.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def completion_logprobs(generation: Generation, tokenizer: Any) -> dict[str, Any]:
    """`logprobs` of a completion choice: OpenAI's legacy per-token lists."""
    tokens, offsets, offset = [], [], 0
    for entry in generation.logprobs:
        text = tokenizer.decode([entry.token])
        tokens.append(text)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens,
            "token_logprobs": [e.logprob for e in generation.logprobs],
            "top_logprobs": [{tokenizer.decode([t]): lp for t, lp in e.top}
                             for e in generation.logprobs],
            "text_offset": offsets}


def chat_logprobs(generation: Generation, tokenizer: Any) -> dict[str, Any]:
    """`logprobs` of a chat choice: a list of tokens with their alternatives."""

    def token(t: int, logprob: float) -> dict[str, Any]:
        text = tokenizer.decode([t])
        return {"token": text, "logprob": logprob,
                "bytes": list(text.encode("utf-8"))}

    return {"content": [{**token(e.token, e.logprob),
                         "top_logprobs": [token(t, lp) for t, lp in e.top]}
                        for e in generation.logprobs]}


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


def jobs_for(engine: Engine, body: SamplingRequest, prompts: list[list[int]],
             max_tokens: int, stop_tokens: tuple[str, ...]) -> list[Job]:
    """`n` jobs per prompt, choice i * n + j for prompt i (OpenAI's order); with a
    seed, choice k samples with seed + k, so the choices differ but repeat."""
    n = body.n or 1
    return [engine.job(ids, body, max_tokens, stop_tokens,
                       top_logprobs=body.top_logprobs_k(), seed_offset=i * n + j)
            for i, ids in enumerate(prompts) for j in range(n)]


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    """Continue each prompt; stop at <|endoftext|>, a stop string or max_tokens."""
    engine = get_engine(request)
    engine.check_model(body.model)
    prompts = [engine.completion_prompt(p) for p in body.prompts()]
    max_tokens = body.max_tokens or min(DEFAULT_COMPLETION_TOKENS,
                                        engine.settings.max_tokens_cap)
    jobs = jobs_for(engine, body, prompts, max_tokens, stop_tokens=(ENDOFTEXT,))
    generations = engine.start_all(jobs, bool(body.stream))
    meta = response_meta(engine, "text_completion")
    note_for_log(request, meta["id"], generations)

    def choice(index: int, text: str | None, finish_reason: str | None) -> dict:
        return {"index": index, "text": text or "", "logprobs": None,
                "finish_reason": finish_reason}

    if body.stream:
        pieces = merged(generations, request.is_disconnected)
        return stream_response(event_stream(meta, generations, pieces, choice,
                                            body.include_usage()))
    texts = await whole_texts(generations, request.is_disconnected)
    choices = [choice(i, text, g.finish_reason)
               for i, (text, g) in enumerate(zip(texts, generations))]
    if body.logprobs is not None:
        for c, g in zip(choices, generations):
            c["logprobs"] = completion_logprobs(g, engine.tokenizer)
    return {**meta, "choices": choices, "usage": usage(generations)}


@router.post("/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Any:
    """Reply as the assistant; stop at <|im_end|>, a stop string or max_tokens."""
    engine = get_engine(request)
    engine.check_model(body.model)
    prompt_ids = engine.chat_prompt(body.messages)
    max_tokens = (body.max_completion_tokens or body.max_tokens
                  or engine.settings.max_tokens_cap)
    jobs = jobs_for(engine, body, [prompt_ids], max_tokens,
                    stop_tokens=(IM_END, ENDOFTEXT))
    generations = engine.start_all(jobs, bool(body.stream))
    meta = response_meta(engine, "chat.completion")
    note_for_log(request, meta["id"], generations)

    def delta(index: int, text: str | None, finish_reason: str | None) -> dict:
        return {"index": index, "delta": {} if text is None else {"content": text},
                "logprobs": None, "finish_reason": finish_reason}

    if body.stream:
        meta["object"] = "chat.completion.chunk"

        def role(index: int) -> dict[str, Any]:
            return {**delta(index, "", None),
                    "delta": {"role": "assistant", "content": ""}}

        pieces = merged(generations, request.is_disconnected)
        return stream_response(event_stream(meta, generations, pieces, delta,
                                            body.include_usage(), head=role))
    texts = await whole_texts(generations, request.is_disconnected)
    choices = []
    for index, (text, g) in enumerate(zip(texts, generations)):
        logprobs = chat_logprobs(g, engine.tokenizer) if body.logprobs else None
        choices.append({"index": index,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": logprobs, "finish_reason": g.finish_reason})
    return {**meta, "choices": choices, "usage": usage(generations)}


# ------------------------------------------------------------------------ the app


def note_for_log(request: Request, response_id: str,
                 generations: list[Generation]) -> None:
    """Tell the access log (if any) what this request became."""
    record = request.scope.get("access_log")
    if record is not None:
        record.update(id=response_id, generations=generations)


class AccessLog:
    """One JSON line per request, written when its response has been sent:

        {"time": "2026-01-01T12:00:00.123Z", "id": "cmpl-...", "method": "POST",
         "route": "/v1/completions", "status": 200, "prompt_tokens": 5,
         "completion_tokens": 16, "ttft_s": 0.012, "latency_s": 0.094,
         "client": "127.0.0.1:52144"}

    `ttft_s` (time to first token) and `latency_s` count from the request's
    arrival; `id`, the token counts and `ttft_s` are null for routes that generate
    nothing. One JSON object per line is what log shippers (Vector, Fluent Bit,
    Loki, `jq`) read without a parser of their own.
    """

    def __init__(self, app: Any, write: Callable[[str], Any]):
        self.app, self.write = app, write

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        arrived, status = time.monotonic(), 500
        record: dict[str, Any] = {"id": None, "generations": []}
        scope["access_log"] = record  # the endpoints fill it in (note_for_log)

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.write(json.dumps(access_line(scope, record, status, arrived)) + "\n")


def access_line(scope: dict, record: dict[str, Any], status: int,
                arrived: float) -> dict[str, Any]:
    """The fields of one access-log line (see `AccessLog`)."""
    generations: list[Generation] = record["generations"]
    firsts = [g.submitted + g.first_token_s for g in generations
              if g.first_token_s is not None]
    counts = usage(generations) if generations else {}
    host, port = scope.get("client") or ("", 0)
    now = time.time()
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now % 1 * 1000):03d}Z",
            "id": record["id"], "method": scope["method"], "route": scope["path"],
            "status": status, "prompt_tokens": counts.get("prompt_tokens"),
            "completion_tokens": counts.get("completion_tokens"),
            "ttft_s": round(min(firsts) - arrived, 4) if firsts else None,
            "latency_s": round(time.monotonic() - arrived, 4),
            "client": f"{host}:{port}"}


class BodyLimit:
    """Refuse a request body over `max_bytes` with 413 before anything reads it:
    at once by its Content-Length, or as soon as a chunked body grows past it."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = APIError(413, f"the request body is over {self.max_bytes} bytes",
                           code="request_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if int(length) > self.max_bytes:
                return await too_big.response()(scope, receive, send)
            return await self.app(scope, receive, send)
        body, more = b"", True  # chunked: read it here, counting, then pass it on
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)  # the client left
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await too_big.response()(scope, receive, send)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def create_app(engine: Engine, access_log: TextIO | None = None) -> FastAPI:
    """The FastAPI application around one engine; with `access_log`, one JSON line
    per request goes there (`AccessLog`)."""
    app = FastAPI(title="llm-reference", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.engine = engine
    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=engine.settings.max_body_bytes)
    if access_log is not None:  # added last: outermost, so it sees every reply
        app.add_middleware(AccessLog, write=access_log.write)
    keyed = [Depends(check_api_key)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return engine.health()

    @app.get("/metrics", dependencies=keyed, response_class=PlainTextResponse)
    async def metrics() -> str:
        """The engine's counters for Prometheus."""
        return engine.metrics()

    @app.get("/openapi.json", dependencies=keyed, include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", dependencies=keyed, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

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
    """uvicorn around `app`; its own access log is off (ours is `AccessLog`)."""
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level,
                                         access_log=False,
                                         timeout_graceful_shutdown=5))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free port (read it from getsockname).

    We say proto=IPPROTO_TCP so that asyncio switches Nagle's algorithm off on each
    connection (TCP_NODELAY). With it on, the body of a reply, written after its
    headers, waits for the client's delayed ACK: up to 40 ms per request.
    """
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a TCP port; choose one in 0-65535 "
                        "(0 picks a free one)")
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
