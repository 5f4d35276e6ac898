"""`serve`: an OpenAI-compatible HTTP server for a run (`serve.py`, `engine.py`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from ..errors import UserError
from ..hosts import is_loopback
from .common import add_device, add_run, resolve_device


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run(parser)
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
    parser.add_argument("--max-concurrency", type=int, default=16, metavar="N",
                        help="sequences decoded together in one batch: KV cache "
                             "slots of a full context each (default: 16)")
    parser.add_argument("--max-queue", type=int, default=256, metavar="N",
                        help="sequences waiting for a slot; beyond that requests "
                             "get 429 with Retry-After (default: 256)")
    parser.add_argument("--access-log", default="-", metavar="FILE",
                        help="append one JSON line per request (id, route, status, "
                             "tokens, time to first token, latency, client) to FILE; "
                             "'-' is stderr, 'off' writes none (default: -)")
    parser.add_argument("--model-name", metavar="NAME",
                        help="the model id clients pass as `model` (default: the "
                             "run folder's name)")
    add_device(parser)


def run(args: argparse.Namespace) -> int:
    from ..artifacts import load_model
    from ..engine import Engine, ServerSettings
    from ..serve import bind, create_app, uvicorn_server

    device = resolve_device(args.device)
    settings = ServerSettings(
        model_name=args.model_name or Path(args.run).resolve().name,
        max_tokens_cap=args.max_tokens_cap, max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        api_key=args.api_key or None)
    settings.check()
    if not is_loopback(args.host) and settings.api_key is None:
        print(f"warning: listening on {args.host} without an API key: anyone who can "
              "reach this port can use the model; set LLM_API_KEY", file=sys.stderr)
    access_log = open_access_log(args.access_log)
    model, tokenizer, state = load_model(args.run, args.step, device=str(device))
    engine = Engine(model, tokenizer, settings)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"serving {settings.model_name!r} (step {state['step']}, {device}) at "
          f"http://{host}:{port}/v1", flush=True)
    try:
        uvicorn_server(create_app(engine, access_log)).run(sockets=[sock])
    finally:
        engine.close()
        if access_log not in (None, sys.stderr):
            access_log.close()
    return 0


def open_access_log(path: str) -> TextIO | None:
    """Where `--access-log` goes: stderr, nowhere, or a file opened to append
    (line-buffered: each request's line reaches the file when it is written)."""
    if path == "-":
        return sys.stderr
    if path == "off":
        return None
    try:
        return open(path, "a", buffering=1, encoding="utf-8")
    except OSError as e:
        raise UserError(f"--access-log {path}: cannot open it to append "
                        f"({e.strerror}); give a writable file, '-' or 'off'") from None
