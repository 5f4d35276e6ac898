"""Serving under load: our OpenAI-compatible server vs `generate` called in-process.

`--clients` threads send /v1/completions requests back to back for `--seconds` to a
server this script starts (`python -m llm_reference serve`, a subprocess, on a free
loopback port; never another host). Each request samples `--max-tokens` tokens
(temperature 1, its own seed) from the same prompt. We print requests/s, tokens/s,
p50/p99 latency (and time to first token with `--stream`) and the error count,
which should be 0.

The peer is the same work without the server: as many threads calling `generate`
directly in this process, for the same time, with the same number of torch
threads. ratio = our tokens/s / the peer's: what HTTP, JSON, validation, SSE and
the hand-over between threads cost (1.0 = nothing). It is a fixed cost per token,
so the smaller the model, the more it shows. The server runs in its own process,
with its own GIL, so with several clients the ratio can exceed 1.

Without `--run` the model is random weights in the `tiny` preset's shape (4 layers,
d_model 128, context 128) with a tokenizer trained on a little stdlib text, saved
as a run folder in a temporary directory.

    python benchmarks/serve.py --quick                  # 2 clients x 3 s, ~20 s
    python benchmarks/serve.py --clients 4 --seconds 10
    python benchmarks/serve.py --run runs/tiny --stream

Single runs on a shared machine: noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import torch

from llm_reference.checkpoint import load_model, save_checkpoint
from llm_reference.generate import generate
from llm_reference.model import GPT, ModelConfig
from llm_reference.sources import stdlib_files
from llm_reference.tokenizer import Tokenizer

MAX_CLIENTS, MAX_SECONDS, MAX_TOKENS = 32, 120, 512  # hard caps: a bounded test
PROMPT = "def parse_args(argv):\n    "
ROUNDS = 3  # ours and the peer take turns, each for seconds / ROUNDS


@dataclass
class Load:
    """What the clients of one run measured."""

    latencies: list[float] = field(default_factory=list)  # seconds per request
    first_token: list[float] = field(default_factory=list)  # seconds, when streaming
    tokens: int = 0
    errors: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, latency: float, tokens: int, first: float | None = None) -> None:
        with self.lock:
            self.latencies.append(latency)
            self.tokens += tokens
            if first is not None:
                self.first_token.append(first)

    def error(self) -> None:
        with self.lock:
            self.errors += 1

    def summary(self) -> str:
        ms = np.array(self.latencies) * 1000
        line = (f"{len(ms) / self.seconds:7.2f} req/s  "
                f"{self.tokens / self.seconds:8.1f} tokens/s  "
                f"p50 {np.percentile(ms, 50):7.1f} ms  "
                f"p99 {np.percentile(ms, 99):7.1f} ms  errors {self.errors}")
        if self.first_token:
            line += f"  first token p50 {np.median(self.first_token) * 1000:.1f} ms"
        return line


def hammer(clients: int, seconds: float, request: Callable[[int], tuple],
           load: Load) -> None:
    """Run `request(seed)` from `clients` threads, back to back, for `seconds`;
    add what they measured to `load`."""
    deadline = time.perf_counter() + seconds

    def client(n: int) -> None:
        seed = n * 1_000_000 + len(load.latencies)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                tokens, first = request(seed)
            except Exception:  # noqa: BLE001 - a benchmark counts failures
                load.error()
                continue
            load.add(time.perf_counter() - start, tokens,
                     None if first is None else first - start)
            seed += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load.seconds += time.perf_counter() - start


def http_request(url: str, max_tokens: int, stream: bool) -> Callable[[int], tuple]:
    local = threading.local()  # one connection pool per client thread

    def request(seed: int) -> tuple[int, float | None]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        body = {"model": "bench", "prompt": PROMPT, "max_tokens": max_tokens,
                "temperature": 1.0, "seed": seed, "stream": stream,
                "stream_options": {"include_usage": True}}
        if not stream:
            r = local.client.post(url, json=body)
            r.raise_for_status()
            return r.json()["usage"]["completion_tokens"], None
        first, tokens = None, 0
        with local.client.stream("POST", url, json=body) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                if chunk["choices"] and chunk["choices"][0]["text"] and first is None:
                    first = time.perf_counter()
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
        return tokens, first

    return request


def direct_request(model: GPT, tokenizer: Tokenizer,
                   max_tokens: int) -> Callable[[int], tuple]:
    prompt_ids = tokenizer.encode(PROMPT)
    eot = tokenizer.special_tokens["<|endoftext|>"]

    def request(seed: int) -> tuple[int, None]:
        ids = list(generate(model, prompt_ids, max_tokens, temperature=1.0,
                            stop_ids={eot}, seed=seed))
        return len(ids), None

    return request


def random_run(root: Path) -> Path:
    """A run folder holding a random model in the tiny preset's shape."""
    _, files = stdlib_files()
    text = "".join(p.read_text(encoding="utf-8") for p in files[:60])
    tokenizer = Tokenizer.train([text], vocab_size=1024)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, context_length=128,
                         n_layer=4, n_head=4, d_model=128)
    model = GPT(config)
    run = root / "random-tiny"
    state = {"config": {"model": config.to_dict(), "train": {}}}
    save_checkpoint(run, 0, model, torch.optim.AdamW(model.parameters()), state, 1)
    tokenizer.save(run / "tokenizer.json")
    return run


@contextmanager
def server_process(run: Path, clients: int, max_tokens: int,
                   threads: int, device: str = "cpu") -> Iterator[str]:
    """Start `python -m llm_reference serve` on a free loopback port; yield its URL."""
    command = [sys.executable, "-m", "llm_reference", "serve", "--run", str(run),
               "--host", "127.0.0.1", "--port", "0", "--model-name", "bench",
               "--max-concurrency", str(clients), "--max-tokens-cap",
               str(max_tokens), "--device", device]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    try:
        line = proc.stdout.readline()  # "serving 'bench' (...) at http://HOST:PORT/v1"
        if " at http://127.0.0.1:" not in line:
            raise RuntimeError(f"the server did not start: {line!r}")
        yield line.rsplit(" at ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="serve this run (default: a random "
                        "model in the tiny preset's shape)")
    parser.add_argument("--clients", type=int, default=4,
                        help=f"concurrent clients (default 4, at most {MAX_CLIENTS})")
    parser.add_argument("--seconds", type=float, default=10,
                        help=f"length of each run (default 10, at most {MAX_SECONDS})")
    parser.add_argument("--max-tokens", type=int, default=64,
                        help=f"tokens per request (default 64, at most {MAX_TOKENS})")
    parser.add_argument("--stream", action="store_true",
                        help="stream the replies (SSE) and time the first token")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="2 clients x 3 seconds")
    parser.add_argument("--device", default="cpu",
                        help="where both the server and the direct loop run "
                             "(default: cpu)")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.seconds = 2, 3
    if not (1 <= args.clients <= MAX_CLIENTS and 0 < args.seconds <= MAX_SECONDS
            and 1 <= args.max_tokens <= MAX_TOKENS):
        parser.error(f"--clients 1..{MAX_CLIENTS}, --seconds up to {MAX_SECONDS}, "
                     f"--max-tokens 1..{MAX_TOKENS}")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or random_run(Path(tmp))
        model, tokenizer, state = load_model(run, device=args.device)
        c = model.config
        print(f"model: {run.name} step {state['step']}; {c.n_layer} layers x d_model "
              f"{c.d_model}, context {c.context_length}, vocab {c.vocab_size}, "
              f"{model.num_parameters() / 1e6:.2f} M params")
        mode = "streaming" if args.stream else "non-streaming"
        print(f"load: {args.clients} clients x {args.seconds:g} s, max_tokens "
              f"{args.max_tokens}, temperature 1, {mode}, {args.threads} torch "
              "thread(s), loopback")
        direct = direct_request(model, tokenizer, args.max_tokens)
        ours, peer = Load(), Load()
        with server_process(run, args.clients, args.max_tokens, args.threads,
                            args.device) as url:
            request = http_request(url + "/completions", args.max_tokens, args.stream)
            request(0), direct(0)  # warm up
            for _ in range(ROUNDS):  # alternate, so both see the same machine load
                hammer(args.clients, args.seconds / ROUNDS, direct, peer)
                hammer(args.clients, args.seconds / ROUNDS, request, ours)
    print(f"ours  (HTTP server)             {ours.summary()}")
    print(f"peer  (generate, in-process)    {peer.summary()}")
    ratio = (ours.tokens / ours.seconds) / (peer.tokens / peer.seconds)
    print(f"ratio (ours / peer tokens/s)    {ratio:.2f}")

if __name__ == "__main__":
    main()
