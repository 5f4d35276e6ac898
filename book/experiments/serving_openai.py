# %% [markdown]
# # Our model behind the OpenAI API
#
# We train a tiny model for a few hundred steps (about 20 s on two CPU cores: it
# writes text that looks a little like Python, nothing more), start
# `llm_reference.serve` in this process on a free port of 127.0.0.1, and talk to it
# with the official `openai` client: a completion, a streamed chat reply, the raw
# Server-Sent Events, the errors a client can cause, and a few timed requests. Then
# a second server with 16 slots takes the same 32 streamed requests from 1, 2, 4, 8
# and 16 clients at once: throughput and latency against concurrency. Loopback
# only, bounded: a few hundred short requests in all.

# %%
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack

import httpx
import matplotlib.pyplot as plt
import numpy as np
import openai
import torch
from openai import OpenAI

from llm_reference import plan, units
from llm_reference.checkpoint import load_model
from llm_reference.engine import Engine, ServerSettings
from llm_reference.flops import count_parameters
from llm_reference.memory import USABLE_MEMORY, kv_cache_bytes
from llm_reference.model import ModelConfig
from llm_reference.quickstart import tiny_base, tiny_data
from llm_reference.serve import BackgroundServer, create_app

BOOK = {"timeout": 300, "seed": 0,
        "settings": {"max_bytes": 300_000, "vocab_size": 512, "steps": 300,
                     "model": {"context_length": 128, "n_layer": 2, "n_head": 2,
                               "d_model": 64},
                     "max_concurrency": 2, "max_tokens_cap": 512,
                     "latency_tokens": [1, 16, 64], "repeats": 5,
                     "clients": [1, 2, 4, 8, 16], "sweep_requests": 32,
                     "sweep_tokens": 32}}
S = BOOK["settings"]
torch.set_num_threads(1)  # one core per generation: two can run side by side
NAME = "tiny"

# `prepare` and `train` through the quickstart helpers, which keep the run in a cache
data_dir = tiny_data(max_bytes=S["max_bytes"], vocab_size=S["vocab_size"])
base = tiny_base(data_dir, S["steps"], model=S["model"], seed=BOOK["seed"], lr=5e-3)
model, tokenizer, state = load_model(base.folder)
print(f"trained {model.num_parameters():,} parameters for {state['step']} steps: "
      f"val loss {base.val_loss:.2f}")

settings = ServerSettings(NAME, max_tokens_cap=S["max_tokens_cap"],
                          max_concurrency=S["max_concurrency"],
                          max_queue=0)  # no waiting room: the next request gets 429
engine = Engine(model, tokenizer, settings)
stack = ExitStack()
server = stack.enter_context(BackgroundServer(create_app(engine)))
stack.callback(engine.close)
print(f"serving {NAME!r} on {server.host}, a free port")


def shown(body: dict) -> str:
    """A response body as JSON; `id` and `created` change on every call, so we
    shorten them."""
    return json.dumps({**body, "id": body["id"][:9] + "...", "created": "..."},
                      indent=1)


# %% tags=["checkpoint"]
client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
print("models:", [m.id for m in client.models.list()])

raw = client.completions.with_raw_response.create(
    model=NAME, prompt="    def __init__(self", max_tokens=20, temperature=0.7,
    seed=1)
print(shown(raw.http_response.json()))  # the body as sent; raw.parse() reads it

stream = client.chat.completions.create(
    model=NAME, messages=[{"role": "user", "content": "Write a function."}],
    max_tokens=12, temperature=0, stream=True,
    stream_options={"include_usage": True})
for chunk in stream:
    if chunk.usage:
        print("usage:", chunk.usage.model_dump(exclude_none=True))
    for choice in chunk.choices:
        print(f"chunk: delta={choice.delta.model_dump(exclude_none=True)} "
              f"finish_reason={choice.finish_reason}")

# %% [markdown]
# The same kind of stream on the wire: each event is a `data:` line and a blank
# line; the last is `data: [DONE]`.

# %% tags=["wire"]
body = {"model": NAME, "prompt": "import ", "max_tokens": 3, "temperature": 0,
        "stream": True}
with httpx.stream("POST", f"{server.url}/v1/completions", json=body) as response:
    print(response.status_code, response.headers["content-type"])
    for line in response.iter_lines():
        if line.startswith("data: {"):  # shorten the fields every event repeats
            event = json.loads(line[6:])
            event.update(id="...", created="...")
            line = "data: " + json.dumps(event)
        print(line)

# %% [markdown]
# Requests the server refuses: each gets OpenAI's error body and a 4xx status, and
# the server carries on.

# %% tags=["errors"]
bad = [{"model": NAME, "prompt": "x", "max_tokens": 100_000},
       {"model": "gpt-4", "prompt": "x"},
       {"model": NAME, "prompt": "x", "temperature": 5},
       {"model": NAME, "prompt": "x", "max_tokens": "ten"},
       {"model": NAME, "prompt": "x" * 2000}]
for request in bad:
    response = httpx.post(f"{server.url}/v1/completions", json=request)
    print(response.status_code, response.json()["error"]["message"])

# %% [markdown]
# Busy: two long streams take both slots; a third request gets 429 at once, with
# `Retry-After`. Closing the streams (the clients "disconnect") frees the slots.

# %% tags=["busy"]
long = {"model": NAME, "prompt": "def ", "max_tokens": S["max_tokens_cap"],
        "temperature": 0, "stream": True}
open_streams = []
with httpx.Client(base_url=server.url) as http, ExitStack() as streams:
    for _ in range(S["max_concurrency"]):
        response = streams.enter_context(http.stream("POST", "/v1/completions",
                                                     json=long))
        lines = response.iter_lines()
        next(lines)  # the first event: generation has started
        open_streams.append(lines)  # keep reading possible: the client stays
    print("health:", http.get("/health").json())
    try:
        client.completions.create(model=NAME, prompt="x", max_tokens=4)
    except openai.RateLimitError as e:
        print(e.status_code, "Retry-After:", e.response.headers["retry-after"],
              e.body["message"])
    open_streams.clear()
deadline = time.monotonic() + 10
while engine.health()["busy"] and time.monotonic() < deadline:
    time.sleep(0.05)
print("after closing the streams:", engine.health())
assert engine.health()["requests"]["rejected"] == 1


# %% [markdown]
# Latency on loopback: each size five times, plain and streamed (the median is
# shown). Then the same eight requests of 64 tokens from one client and from two
# clients at once. A tiny model on a shared two-core machine: the numbers are noisy,
# their proportions are the point.

# %% tags=["latency"]
def plain(tokens: int) -> tuple[float, int]:
    start = time.perf_counter()
    reply = client.completions.create(model=NAME, prompt="def ", max_tokens=tokens,
                                      temperature=0)
    return time.perf_counter() - start, reply.usage.completion_tokens


def streamed(tokens: int) -> tuple[float, float]:
    """(time to the first text, time to the end) of a streamed completion."""
    start, first = time.perf_counter(), None
    for chunk in client.completions.create(model=NAME, prompt="def ",
                                           max_tokens=tokens, temperature=0,
                                           stream=True):
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


plain(8)  # warm up: the first request pays for lazy initialisation
latency = []
for tokens in S["latency_tokens"]:
    runs = [plain(tokens) for _ in range(S["repeats"])]
    streams_ = [streamed(tokens) for _ in range(S["repeats"])]
    total = statistics.median(t for t, _ in runs)
    latency.append({
        "max_tokens": tokens, "tokens": runs[0][1], "plain_ms": 1000 * total,
        "first_ms": 1000 * statistics.median(f for f, _ in streams_),
        "stream_ms": 1000 * statistics.median(t for _, t in streams_),
        "ms_per_token": 1000 * total / runs[0][1]})
print("max_tokens  tokens  plain ms  first text ms  stream ms  ms/token")
for r in latency:
    print(f"{r['max_tokens']:10d} {r['tokens']:7d} {r['plain_ms']:9.1f} "
          f"{r['first_ms']:14.1f} {r['stream_ms']:10.1f} {r['ms_per_token']:9.2f}")

# %% [markdown]
# Concurrency: `python -m llm_reference serve` with 16 slots (the default), in a
# process of its own as in production (here the clients would share Python's lock
# with the server), gets the same 32 streamed requests of 32 tokens, sent by 1, 2,
# 4, 8 and 16 clients at once (each client sends its share back to back). Tokens
# per second for all, and per request the time to the first text and to the end;
# each level runs twice and the faster run is kept.

# %% tags=["sweep"]
command = [sys.executable, "-m", "llm_reference", "serve", "--run", str(base.folder),
           "--port", "0", "--model-name", NAME, "--device", "cpu",
           "--max-concurrency", str(max(S["clients"])), "--access-log", "off"]
process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
stack.callback(process.wait, timeout=30)
stack.callback(process.terminate)
sweep_url = process.stdout.readline().split(" at ")[1].strip()  # "serving ... at URL"
sweep_client = OpenAI(base_url=sweep_url, api_key="unused")


def timed_stream(seed: int) -> tuple[float, float, int]:
    """(first text, end, tokens) of one streamed, sampled completion."""
    start, first, tokens = time.perf_counter(), None, 0
    for chunk in sweep_client.completions.create(
            model=NAME, prompt="def ", max_tokens=S["sweep_tokens"], seed=seed,
            stream=True, stream_options={"include_usage": True}):
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.perf_counter() - start
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter() - start
    return first or end, end, tokens


def one_level(clients: int) -> dict:
    results, lock = [], threading.Lock()

    def client_loop(c: int) -> None:
        for i in range(S["sweep_requests"] // clients):
            r = timed_stream(seed=c * 1000 + i)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    first, end, tokens = (np.array(x) for x in zip(*results))
    return {"clients": clients, "tokens_per_s": tokens.sum() / seconds,
            "p50_ms": 1000 * np.median(end), "p99_ms": 1000 * np.percentile(end, 99),
            "ttft_ms": 1000 * np.median(first), "seconds": seconds}


timed_stream(0)  # warm up
trials = {n: [] for n in S["clients"]}
for _ in range(2):  # each level twice, taking turns; a shared machine is noisy,
    for n in S["clients"]:  # so we keep the faster of the two
        trials[n].append(one_level(n))
sweep = [max(trials[n], key=lambda r: r["tokens_per_s"]) for n in S["clients"]]
print("clients  tokens/s  latency p50 ms  p99 ms  first text p50 ms")
for r in sweep:
    print(f"{r['clients']:7d} {r['tokens_per_s']:9.0f} {r['p50_ms']:15.0f} "
          f"{r['p99_ms']:7.0f} {r['ttft_ms']:18.0f}")

fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 2.6))
n = [r["clients"] for r in sweep]
left.plot(n, [r["tokens_per_s"] for r in sweep], "o-", color="#0969da")
left.set_ylabel("tokens/s, all clients")
left.set_ylim(bottom=0)
right.plot(n, [r["p50_ms"] for r in sweep], "o-", color="#bc4c00",
           label="whole request (p50)")
right.plot(n, [r["ttft_ms"] for r in sweep], "o--", color="#57606a",
           label="first text (p50)")
right.set_ylabel("ms")
right.set_ylim(bottom=0)
right.legend(frameon=False, fontsize=8)
for ax in (left, right):
    ax.set_xscale("log", base=2)
    ax.set_xticks(n, [str(c) for c in n])
    ax.set_xlabel("concurrent clients")
    ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("serving_clients.svg")

# %% [markdown]
# KV cache per request, from the planner's arithmetic: this tiny model in fp32, and
# the first plans of the practitioner and researcher tracks in bf16 on one of their
# GPUs. The reference preallocates the cache for the whole context.

# %% tags=["kv"]
kv = []
models = [("this tiny model", model.config.to_dict(), 4, None)]
for track in ("practitioner", "researcher"):
    p = plan.make_plan(plan.TRACKS[track].budgets[0])
    models.append((f"{units.fmt_count(p.params)} ({track})", p.model, 2, p.hardware))
for label, m, value_bytes, hw in models:
    context = m["context_length"]
    per_request = kv_cache_bytes(ModelConfig.from_dict(m), context, 1, value_bytes)
    mha = kv_cache_bytes(ModelConfig.from_dict({**m, "n_kv_head": m["n_head"]}),
                         context, 1, value_bytes)
    weights = count_parameters(ModelConfig.from_dict(m)) * value_bytes
    row = {"model": label, "context": context,
           "per_token_kib": per_request / context / 2**10,
           "per_request_mib": per_request / 2**20, "mha_mib": mha / 2**20,
           "weights_gib": weights / units.GiB, "slots": "–"}
    if hw is not None:
        free = hw.memory_gib * units.GiB * USABLE_MEMORY - weights
        row.update(slots=int(free // per_request), device=hw.name,
                   # batch 1 reads every weight once per token: a lower bound
                   floor_ms=1000 * weights / (hw.bandwidth_gbs * 1e9),
                   # batch at which a decoding step turns compute-bound
                   ridge=hw.peak_tflops * 1e12 / (hw.bandwidth_gbs * 1e9))
    kv.append(row)
    print(f"{label:21} context {context:4d}: {row['per_request_mib']:6.1f} MiB per "
          f"request ({row['mha_mib']:5.1f} without GQA), weights "
          f"{row['weights_gib']:.2f} GiB"
          + (f", {row['slots']:,} requests fit" if hw is not None else ""))

# %%
stack.close()
json.dump({"latency": latency, "sweep": sweep, "kv": kv,
           "model": {"parameters": model.num_parameters(), "steps": state["step"],
                     **S["model"], "vocab_size": model.config.vocab_size},
           "settings": {"max_concurrency": S["max_concurrency"],
                        "max_tokens_cap": S["max_tokens_cap"],
                        "sweep_requests": S["sweep_requests"],
                        "sweep_tokens": S["sweep_tokens"]}},
          open("serving.json", "w"), indent=1)
