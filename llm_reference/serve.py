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

**Safety.** The server binds 127.0.0.1 unless told otherwise; an API key
(`--api-key` or `LLM_API_KEY`) makes every /v1 request show
`Authorization: Bearer KEY`. Every request is validated before it reaches the
model (types, ranges, prompt length, `max_tokens` cap): a bad request gets a 4xx
with OpenAI's error body `{"error": {"message", "type", "param", "code"}}` and the
server carries on.

The request bodies are in `openai_schema.py`; the engine that runs the generations,
and refuses requests beyond `max_concurrency` with 429, is in `engine.py`.
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from .chat import ENDOFTEXT, IM_END
from .engine import Engine, Generation
from .errors import UserError
from .openai_schema import (
    APIError,
    ChatRequest,
    CompletionRequest,
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
