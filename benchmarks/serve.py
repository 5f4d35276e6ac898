"""Serving under load: continuous batching vs one thread per request.

For 1, 4, 16 and 64 concurrent clients, each a thread with the official `openai`
client (default retries), every client streams `--requests` completions of
`--max-tokens` tokens (temperature 1, its own seed) back to back, in each of
`ROUNDS` turns, to servers this script starts in subprocesses on free loopback ports
(never another host). We print tokens/s, p50 / p99 request latency, p50 time to
first token and errors.

Three servers, the same model, the same torch threads, taking turns:

- ours: `llm_reference.engine`, one scheduler loop decoding every running sequence
  in one batch (`--max-concurrency` = clients, so nobody waits for a slot);
- peer: the thread-per-request engine this project had before (engine.py and
  serve.py as of git `--baseline-ref`, loaded from git into a module), also with
  `--max-concurrency` = clients: each request runs its own generate loop;
- hf: Hugging Face transformers' own server, `transformers serve
  --continuous-batching` (paged attention, its engine in a process of its own), on
  the model exported with `python -m llm_reference export --format hf`; `--no-hf`
  leaves it out. (llama.cpp is not measured: no llama-cpp-python wheel for this
  machine, and building it from source takes longer than this benchmark.)

ratio = our tokens/s / the peer's (and / hf's). Targets (issue 15): >= 4 at 16
clients, 0 errors at 64, our p99 <= 2 x p50 at 16.

Without `--run` the model is random weights in the `tiny` preset's shape (4 layers,
d_model 128, context 128; `--d-model`, `--n-layer` change it) with a tokenizer
trained on a little stdlib text. A model this small is mostly Python overhead per
token, which batching does not remove; a larger one shows more of its gain.

    python benchmarks/serve.py --quick            # 1 and 4 clients, ~1 minute
    python benchmarks/serve.py                    # 1, 4, 16, 64 clients
    python benchmarks/serve.py --clients 16 --d-model 512 --n-layer 8

Single runs on a shared machine: noisy.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import openai
import torch

from llm_reference.checkpoint import load_model, save_checkpoint
from llm_reference.model import GPT, ModelConfig
from llm_reference.sources import stdlib_files
from llm_reference.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
CLIENTS = (1, 4, 16, 64)
MAX_TOKENS, MAX_REQUESTS = 256, 16  # hard caps: a bounded run
PROMPT = "def parse_args(argv):\n    "
BASELINE_REF = "fd09c06"  # the last commit with the thread-per-request engine
ROUNDS = 2  # ours and the peer take turns, so both see the machine's same load


@dataclass
class Load:
    """What the clients of one run measured."""

    latencies: list[float] = field(default_factory=list)  # seconds per request
    first_token: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, other: Load) -> None:
        self.latencies += other.latencies
        self.first_token += other.first_token
        self.tokens += other.tokens
        self.errors += other.errors
        self.seconds += other.seconds

    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        ms = np.array(self.latencies or [float("nan")]) * 1000
        ttft = np.array(self.first_token or [float("nan")]) * 1000
        return (f"{self.tokens_per_s():8.1f} tokens/s  "
                f"p50 {np.percentile(ms, 50):7.0f} ms  "
                f"p99 {np.percentile(ms, 99):7.0f} ms  "
                f"ttft p50 {np.median(ttft):6.0f} ms  errors {self.errors}")


def hammer(url: str, clients: int, requests: int, max_tokens: int,
           model: str = "bench") -> Load:
    """`clients` threads, each streaming `requests` completions back to back."""
    client = openai.OpenAI(base_url=url, api_key="none")  # default retries: 2
    load = Load()

    def one(seed: int) -> None:
        start, first, tokens = time.perf_counter(), None, 0
        stream = client.completions.create(
            model=model, prompt=PROMPT, max_tokens=max_tokens, temperature=1.0,
            seed=seed, stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.choices and chunk.choices[0].text and first is None:
                first = time.perf_counter() - start
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        with load.lock:
            load.latencies.append(time.perf_counter() - start)
            load.first_token += [] if first is None else [first]
            load.tokens += tokens

    def run(n: int) -> None:
        for i in range(requests):
            try:
                one(n * 1000 + i)
            except openai.OpenAIError:
                with load.lock:
                    load.errors += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load.seconds = time.perf_counter() - start
    return load


def random_run(root: Path, d_model: int = 128, n_layer: int = 4) -> Path:
    """A run folder holding a random model (the tiny preset's shape by default)."""
    _, files = stdlib_files()
    text = "".join(p.read_text(encoding="utf-8") for p in files[:60])
    tokenizer = Tokenizer.train([text], vocab_size=1024)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, context_length=128,
                         n_layer=n_layer, n_head=4, d_model=d_model)
    model = GPT(config)
    run = root / "random-tiny"
    state = {"config": {"model": config.to_dict(), "train": {}}}
    save_checkpoint(run, 0, model, torch.optim.AdamW(model.parameters()), state, 1)
    tokenizer.save(run / "tokenizer.json")
    return run


def baseline_modules(ref: str) -> tuple:
    """engine.py and serve.py as of git `ref`, loaded as modules of llm_reference."""
    modules = []
    for name in ("engine", "serve"):
        source = subprocess.run(["git", "show", f"{ref}:llm_reference/{name}.py"],
                                cwd=REPO, capture_output=True, text=True,
                                check=True).stdout
        source = source.replace("from .engine import", "from .baseline_engine import")
        spec = importlib.util.spec_from_loader(f"llm_reference.baseline_{name}",
                                               loader=None)
        module = importlib.util.module_from_spec(spec)
        module.__package__ = "llm_reference"
        sys.modules[spec.name] = module
        exec(compile(source, f"{ref}:llm_reference/{name}.py", "exec"),
             module.__dict__)
        modules.append(module)
    return tuple(modules)


def serve(run: Path, kind: str, slots: int, max_tokens: int, ref: str,
          device: str = "cpu") -> None:
    """(In the server subprocess) serve `run` with the `kind` engine; print the URL."""
    if kind == "ours":
        from llm_reference import engine
        from llm_reference import serve as web
    else:
        engine, web = baseline_modules(ref)
    model, tokenizer, _ = load_model(run, device=device)
    settings = engine.ServerSettings("bench", max_tokens_cap=max_tokens,
                                     max_concurrency=slots)
    app = web.create_app(engine.Engine(model, tokenizer, settings))
    sock = web.bind("127.0.0.1", 0)
    print(f"at http://127.0.0.1:{sock.getsockname()[1]}/v1", flush=True)
    web.uvicorn_server(app, log_level="error").run(sockets=[sock])


@contextmanager
def server_process(run: Path, kind: str, slots: int, max_tokens: int, ref: str,
                   threads: int, device: str = "cpu") -> Iterator[str]:
    """This script as a server subprocess; yield its URL."""
    command = [sys.executable, __file__, "--child", kind, "--run", str(run),
               "--slots", str(slots), "--max-tokens", str(max_tokens),
               "--baseline-ref", ref, "--device", device]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        if not line.startswith("at http://127.0.0.1:"):
            raise RuntimeError(f"the {kind} server did not start: {line!r}")
        yield line.removeprefix("at ").strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def hf_server(run: Path, root: Path, clients: int, threads: int,
              device: str = "cpu") -> Iterator[tuple[str, str]]:
    """`transformers serve --continuous-batching` on the HF export of `run`; yield
    its URL and the model name its clients pass. Its KV cache: blocks of 32 tokens,
    enough for `clients` full contexts."""
    folder = root / "hf"
    if not folder.exists():
        subprocess.run([sys.executable, "-m", "llm_reference", "export", "--run",
                        str(run), "--out", str(folder)], check=True,
                       capture_output=True)
    context = load_model(run)[0].config.context_length
    port = free_port()
    command = [str(Path(sys.executable).with_name("transformers")), "serve",
               str(folder), "--continuous-batching", "--device", device,
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "error",
               "--cb-block-size", "32",
               "--cb-num-blocks", str(clients * -(-context // 32) + 4),
               "--cb-max-batch-tokens", "256"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # it loads and warms up its engine: up to a minute
            if proc.poll() is not None:
                raise RuntimeError("transformers serve exited while starting")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url + "/v1", str(folder)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="serve this run (default: a random "
                        "model in the tiny preset's shape)")
    parser.add_argument("--requests", type=int, default=2,
                        help=f"requests per client (default 2, at most {MAX_REQUESTS})")
    parser.add_argument("--max-tokens", type=int, default=32,
                        help=f"tokens per request (default 32, at most {MAX_TOKENS})")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads of each server (default 1)")
    parser.add_argument("--baseline-ref", default=BASELINE_REF,
                        help=f"git commit of the peer engine (default {BASELINE_REF})")
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)),
                        help="concurrent clients, comma-separated (default "
                             "1,4,16,64, each at most 64)")
    parser.add_argument("--d-model", type=int, default=128,
                        help="width of the random model (default 128)")
    parser.add_argument("--n-layer", type=int, default=4,
                        help="layers of the random model (default 4)")
    parser.add_argument("--quick", action="store_true", help="1 and 4 clients only")
    parser.add_argument("--device", default="cpu",
                        help="where both servers run the model (default: cpu)")
    parser.add_argument("--no-hf", action="store_true",
                        help="leave out the transformers serve peer")
    parser.add_argument("--child", choices=("ours", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--slots", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    if not (1 <= args.requests <= MAX_REQUESTS and 1 <= args.max_tokens <= MAX_TOKENS
            and all(1 <= n <= max(CLIENTS) for n in levels)):
        parser.error(f"--requests 1..{MAX_REQUESTS}, --max-tokens 1..{MAX_TOKENS}, "
                     f"--clients 1..{max(CLIENTS)} each")
    if args.child:
        torch.set_num_threads(args.threads)
        return serve(args.run, args.child, args.slots, args.max_tokens,
                     args.baseline_ref, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or random_run(Path(tmp), args.d_model, args.n_layer)
        model, _, _ = load_model(run)
        c = model.config
        print(f"model: {c.n_layer} layers x d_model {c.d_model}, context "
              f"{c.context_length}, {model.num_parameters() / 1e6:.2f} M params; "
              f"{args.requests} streamed requests per client, max_tokens "
              f"{args.max_tokens}, {args.threads} torch thread(s) per server")
        for clients in levels[:2] if args.quick else levels:
            kinds = ("peer", "ours") if args.no_hf else ("peer", "ours", "hf")
            loads = {kind: Load() for kind in kinds}
            with ExitStack() as stack:
                urls = {kind: (stack.enter_context(server_process(
                    run, kind, clients, args.max_tokens, args.baseline_ref,
                    args.threads, args.device)), "bench")
                    for kind in ("peer", "ours")}
                if "hf" in kinds:
                    urls["hf"] = stack.enter_context(hf_server(
                        run, Path(tmp), clients, args.threads, args.device))
                for url, name in urls.values():
                    hammer(url, 1, 1, args.max_tokens, name)  # warm up
                for _ in range(ROUNDS):  # take turns: all see the same load
                    for kind, (url, name) in urls.items():
                        loads[kind].add(hammer(url, clients, args.requests,
                                               args.max_tokens, name))
            load = os.getloadavg()[0]
            print(f"{clients:3d} clients  ours {loads['ours'].summary()}")
            for kind in kinds[:1] + kinds[2:]:
                print(f"             {kind:4s} {loads[kind].summary()}")
            ours = loads["ours"].tokens_per_s()
            ratios = "  ".join(f"ours / {kind} "
                               f"{ours / max(loads[kind].tokens_per_s(), 1e-9):.2f}"
                               for kind in kinds if kind != "ours")
            print(f"             tokens/s ratio: {ratios}  (load average {load:.1f})",
                  flush=True)


if __name__ == "__main__":
    main()
