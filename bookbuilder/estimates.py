"""The numbers of each chapter's estimate card: compute, time, cost and memory.

A roadmap node says what its step costs with `estimate = {kind = "...", ...}` in
book/roadmap.toml; `node_estimate(spec, track)` turns that into numbers for one
track. Every kind runs on the hardware of the track's first budget preset (or of
the spec's `budget`), with the model the planner picks for that budget:

- reading: no compute.
- tokenizer: train the BPE tokenizer on `bytes` of text (default: the track's
  corpus, capped at the sample `prepare` trains on) at the measured bytes/s of
  `impl` ("ours" or "hf"); always on a CPU.
- data: the whole `prepare` pipeline (read, clean, dedup, redact, train the
  tokenizer, encode, write shards) at its measured bytes/s on `bytes` (default:
  the corpus the track's plan prepares); on a CPU, in bounded memory.
- shards: the token shards of the track's corpus on disk (2 bytes per id while
  the vocabulary fits in 16 bits, else 4); their encoding is the data card's.
- pretrain: the plan itself.
- step: one optimizer step of the plan (its global batch) and its memory.
- loss: the output layer and cross-entropy over `tokens` tokens, forward and
  backward, and the logits' memory with the chunked loss (without it: the note).
- sweep: a scaling-law sweep, `runs` small runs of `fraction` of the plan's
  compute each, before the real run.
- train: `tokens` more training tokens of the plan's model (an experiment).
- finetune: `tokens` (default: `fraction` of the pretraining tokens) of full
  finetuning, of LoRA (method="lora": no weight gradients for the frozen base,
  ~2/3 of the FLOPs, and no optimizer state for it), or of DPO (method="dpo":
  each pair is two sequences through the policy, forward and backward, and two
  through the frozen reference model, forward only, whose weights also take
  memory).
- eval: a forward pass over `tokens` tokens.
- inference: generate `tokens` tokens for `batch` sequences with a KV cache.
  Each step reads all weights from memory, so at small batches decoding is
  bound by memory bandwidth, not FLOPs: we take the slower of the two.
- quantize: read the weights, write them in int8, and measure perplexity
  before and after on `tokens` tokens.
- serve: `requests` completions of `tokens` tokens, `concurrency` at a time.
- rl: `steps` of GRPO with `prompts` problems per step and `group` completions
  each, `prompt_tokens` + `completion_tokens` long. Each step samples every
  completion with a KV cache (all of the step's sequences decode together, each
  decoding step bound by compute or by reading the weights and cache, as in
  inference), then runs the frozen reference forward (if `kl`) and the policy
  forward and backward over them (3 forward passes' worth). Memory: the plan's
  training memory plus a second copy of the weights and the step's KV cache.
- distributed: the plan's run data-parallel on `gpus` devices (default: the
  preset's count, at least 2), with one ring all-reduce of the fp32 gradients
  per step, 2 (n-1)/n x 4 bytes x N over the link, not overlapped: an upper
  bound on the communication time.

The numbers come from the planner (llm_reference/plan.py), its memory formulas
and calibration.json, never from timing this machine, so they are deterministic.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from llm_reference.budget import parse_budget
from llm_reference.data import TOKENIZER_SAMPLE_BYTES
from llm_reference.flops import forward_flops_per_token
from llm_reference.hardware import CALIBRATION, HARDWARE, Hardware
from llm_reference.memory import kv_cache_bytes, training_memory
from llm_reference.plan import Plan, get_track, make_plan
from llm_reference.units import fmt_count, fmt_duration

from .errors import BuildError

ESTIMATE_KINDS: dict[str, dict[str, Any]] = {
    # kind: its keys and their defaults (None: taken from the track's plan)
    "reading": {},
    "tokenizer": {"bytes": None, "impl": "ours"},
    "data": {"bytes": None},
    "shards": {"budget": None},
    "pretrain": {"budget": None, "tokens_per_param": 20.0},
    "step": {"budget": None},
    "loss": {"tokens": 1_000_000, "budget": None},
    "sweep": {"runs": 5, "fraction": 0.01, "budget": None},
    "train": {"tokens": 1_000_000, "budget": None},
    "finetune": {"tokens": None, "fraction": 0.01, "method": "full", "budget": None},
    "eval": {"tokens": 1_000_000, "budget": None},
    "inference": {"tokens": 1000, "batch": 1, "budget": None},
    "quantize": {"tokens": 100_000, "budget": None},
    "serve": {"requests": 100, "tokens": 128, "concurrency": 1, "budget": None},
    "distributed": {"gpus": None, "budget": None},
    "rl": {"steps": 200, "prompts": 32, "group": 8, "prompt_tokens": 256,
           "completion_tokens": 512, "kl": True, "budget": None},
}


def node_estimate(spec: dict[str, Any], track: str) -> dict[str, Any]:
    """The estimate card of a node's `spec` for one track.

    Returns hardware, count, flops, seconds, cost_usd {low, high}, memory_bytes
    (per device) and a one-line note. A bad spec is a BuildError naming it.
    """
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in ESTIMATE_KINDS:
        raise BuildError(f"estimate kind {kind!r}: choose one of "
                         f"{', '.join(ESTIMATE_KINDS)}")
    unknown = set(spec) - set(ESTIMATE_KINDS[kind])
    if unknown:
        raise BuildError(f"estimate kind {kind!r}: unknown key(s) "
                         f"{', '.join(sorted(unknown))}; it takes "
                         f"{', '.join(ESTIMATE_KINDS[kind]) or 'no keys'}")
    s = {**ESTIMATE_KINDS[kind], **spec}
    t = get_track(track)
    if kind in ("tokenizer", "data"):
        return _cpu_work(kind, s, _cached_plan(s.get("budget") or t.budgets[0],
                                               t.name, 20.0))
    if kind == "reading":
        hw = HARDWARE[parse_budget(t.budgets[0]).hardware]
        return card(kind, track, hw, 1, 0.0, 0.0, 0.0,
                    "reading and small experiments only")
    plan = _cached_plan(s["budget"] or t.budgets[0], t.name,
                        s.get("tokens_per_param", 20.0))
    return MODEL_KINDS[kind](kind, s, plan)


@functools.lru_cache(maxsize=64)
def _cached_plan(budget: str, track: str, tokens_per_param: float) -> Plan:
    """make_plan, remembered: the book asks for the same few plans many times."""
    return make_plan(budget, track, tokens_per_param)


def card(kind: str, track: str, hw: Hardware, count: int, flops: float,
         seconds: float, memory: float, note: str) -> dict[str, Any]:
    """One estimate, JSON-ready: the cost range is `count` devices for `seconds`."""
    hours = seconds / 3600 * count
    return {"kind": kind, "track": track,
            "hardware": f"{count}x {hw.name}" if count > 1 else hw.name,
            "hardware_key": hw.key, "count": count, "flops": flops,
            "seconds": seconds,
            "cost_usd": {"low": hours * hw.price_usd[0],
                         "high": hours * hw.price_usd[1]},
            "memory_bytes": memory, "note": note}


def corpus_bytes(plan: Plan) -> float:
    """The bytes of text behind the tokens the plan prepares, at the default
    corpus's measured bytes per token (a recipe of prose packs a little more)."""
    corpus = CALIBRATION["default_corpus"]
    return plan.data.tokens * corpus["bytes"] / corpus["tokens"]


def _megabytes(size: float) -> str:
    return f"{size / 1e9:,.1f} GB" if size >= 1e9 else f"{size / 1e6:.3g} MB"


def _cpu_work(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Tokenizer training and data preparation: CPU work measured in bytes/s."""
    size = s["bytes"] or corpus_bytes(plan)
    what = (f"{plan.data.recipe}, {fmt_count(plan.data.tokens)} tokens"
            if not s["bytes"] else "the given text")
    if kind == "tokenizer":
        if s["impl"] not in ("ours", "hf"):
            raise BuildError(f"estimate tokenizer impl {s['impl']!r}: 'ours' or "
                             "'hf'")
        size = min(size, TOKENIZER_SAMPLE_BYTES)
        rate = CALIBRATION["tokenizer_train"][s["impl"]]
        note = (f"BPE training ({s['impl']}) on {_megabytes(size)} of {what} "
                f"(at most the {TOKENIZER_SAMPLE_BYTES / 1e6:.0f} MB sample) at "
                f"{rate['bytes_per_s'] / 1e6:.2g} MB/s, measured on 2 CPU cores")
        memory = size * rate["memory_bytes_per_byte"]
    else:
        rate = CALIBRATION["data_prepare"]
        note = (f"`prepare` (clean, dedup, redact, tokenize, write) on "
                f"{_megabytes(size)} of {what} at "
                f"{rate['bytes_per_s'] / 1e6:.2g} MB/s, measured on 2 CPU cores; "
                "more cores (--workers) or machines (--slice) divide the time")
        # streaming: memory is bounded by the measured peak on the default corpus
        memory = CALIBRATION["default_corpus"]["bytes"] * rate["memory_bytes_per_byte"]
    seconds = size / rate["bytes_per_s"]
    return card(kind, plan.track, HARDWARE["cpu"], 1, 0.0, seconds, memory, note)


# ------------------------------------------------ kinds that run the planned model


def _flops_per_second(plan: Plan) -> float:
    """What all the plan's devices achieve together, at the plan's MFU."""
    return plan.budget.count * plan.hardware.peak_tflops * 1e12 * plan.mfu


def _weight_bytes(plan: Plan) -> float:
    """The weights in the plan's compute precision."""
    return plan.params * (4 if plan.hardware.dtype == "float32" else 2)


def _size(plan: Plan) -> str:
    return f"{fmt_count(plan.params)}-parameter model"


def _pretrain(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    return card(kind, plan.track, plan.hardware, plan.budget.count, plan.train_flops,
                plan.seconds, plan.memory["total"], f"the plan for "
                f"{plan.budget.text}: {_size(plan)}, {fmt_count(plan.tokens)} tokens")


def _shards(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The track's token shards on disk; written by `prepare` (the data card)."""
    id_bytes = 2 if plan.config.vocab_size <= 2**16 else 4
    disk = plan.data.tokens * id_bytes
    return card(kind, plan.track, HARDWARE["cpu"], 1, 0.0, 0.0, disk,
                f"{fmt_count(plan.data.tokens)} tokens of {plan.data.recipe} at "
                f"{id_bytes} bytes per id: the memory line is disk; the sampler "
                "maps the shards and reads only its windows")


def _step(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """One optimizer step of the plan: its global batch, forward and backward."""
    flops = plan.tokens_per_step * plan.flops_per_token
    return card(kind, plan.track, plan.hardware, plan.budget.count, flops,
                flops / _flops_per_second(plan), plan.memory["total"],
                f"one optimizer step of the {_size(plan)}: "
                f"{fmt_count(plan.tokens_per_step)} tokens; memory: weights, "
                "gradients, AdamW state and activations")


def _loss(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The output layer and the cross-entropy: 2 d V FLOPs per token forward, twice
    that backward; the chunked loss keeps one chunk of fp32 logits alive."""
    c, micro = plan.config, plan.train["batch_size"]
    flops = s["tokens"] * 6 * c.d_model * c.vocab_size
    chunked = training_memory(c, micro, plan.hardware.dtype)["logits"]
    full = c.context_length * micro * c.vocab_size * 8
    return card(kind, plan.track, plan.hardware, plan.budget.count, flops,
                flops / _flops_per_second(plan), chunked,
                f"output layer + loss over {fmt_count(s['tokens'])} tokens; "
                f"logits: {chunked / 2**30:.2g} GiB chunked instead of "
                f"{full / 2**30:.2g} GiB for a micro-batch of {micro}")


def _sweep(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """A scaling-law sweep: `runs` small runs, each `fraction` of the plan."""
    if s["runs"] < 1 or not 0 < s["fraction"] <= 1:
        raise BuildError(f"estimate sweep runs={s['runs']!r} fraction="
                         f"{s['fraction']!r}: runs >= 1 and 0 < fraction <= 1")
    flops = s["runs"] * s["fraction"] * plan.train_flops
    return card(kind, plan.track, plan.hardware, plan.budget.count, flops,
                flops / _flops_per_second(plan), plan.memory["total"],
                f"{s['runs']} runs at {s['fraction']:.0%} of the {plan.budget.text} "
                f"plan's compute each, to fit the law before the real run")


def _training(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """More training of the planned model: an experiment, or finetuning."""
    method = s.get("method", "full")
    if method not in ("full", "lora", "dpo"):
        raise BuildError(f"estimate finetune method {method!r}: "
                         "'full', 'lora' or 'dpo'")
    tokens = s["tokens"] if s["tokens"] is not None else s["fraction"] * plan.tokens
    per_token = {"full": 1, "lora": 2 / 3, "dpo": 8 / 6}[method]  # of 6N
    flops = tokens * plan.flops_per_token * per_token
    memory = plan.memory["total"]
    if method == "lora":  # frozen weights, no gradients or AdamW state for them
        memory += _weight_bytes(plan) - plan.memory["model_states"]
    if method == "dpo":  # the frozen reference model, forward only
        memory += _weight_bytes(plan)
    what = {"full": "full training", "lora": "LoRA training",
            "dpo": "DPO (policy forward + backward, frozen reference forward)"}
    return card(kind, plan.track, plan.hardware, plan.budget.count, flops,
                flops / _flops_per_second(plan), memory,
                f"{what[method]} of the {_size(plan)} on {fmt_count(tokens)} tokens")


def _forward(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Forward passes over `tokens`: evaluation, or quantization (weights read and
    written in int8, perplexity measured before and after)."""
    hw, config, weights = plan.hardware, plan.config, _weight_bytes(plan)
    passes = 2 if kind == "quantize" else 1  # before and after quantizing
    flops = passes * s["tokens"] * forward_flops_per_token(config)
    seconds = flops / _flops_per_second(plan)
    memory = weights + training_memory(config, plan.train["batch_size"], hw.dtype
                                       )["logits"]
    note = (f"forward passes of the {_size(plan)} over {fmt_count(s['tokens'])} "
            "tokens")
    if kind == "quantize":
        seconds += (weights + plan.params) / (hw.bandwidth_gbs * 1e9)
        memory += plan.params  # the int8 copy, one byte per weight
        note = ("int8 weights, one byte each, plus perplexity before and after "
                f"on {fmt_count(s['tokens'])} tokens ({_size(plan)})")
    return card(kind, plan.track, hw, plan.budget.count, flops, seconds, memory, note)


def _decoding(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Generating with a KV cache, one request batch or a server's many; the slower
    of compute and memory bandwidth sets each step's time."""
    hw, config, weights = plan.hardware, plan.config, _weight_bytes(plan)
    batch = s["batch"] if kind == "inference" else s["concurrency"]
    rounds = 1 if kind == "inference" else math.ceil(s["requests"] / batch)
    tokens = min(s["tokens"], config.context_length)
    value_bytes = 4 if hw.dtype == "float32" else 2
    cache = kv_cache_bytes(config, tokens, batch, value_bytes)
    # one decoding step: FLOPs for `batch` tokens at half the context on
    # average, and a read of all weights plus (on average) half the cache
    step_flops = batch * forward_flops_per_token(config, tokens / 2)
    compute = step_flops / (hw.peak_tflops * 1e12 * plan.mfu)
    memory_read = (weights + cache / 2) / (hw.bandwidth_gbs * 1e9)
    bound = "memory-bandwidth" if memory_read > compute else "compute"
    steps = rounds * tokens
    return card(kind, plan.track, hw, 1, steps * step_flops,
                steps * max(compute, memory_read), weights + cache,
                f"{rounds * batch} x {tokens} tokens with a KV cache, batch "
                f"{batch}, {_size(plan)}: {bound}-bound")


def _distributed(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The plan data-parallel on `gpus` devices, with one all-reduce per step."""
    hw = plan.hardware
    gpus = s["gpus"] or max(2, plan.budget.count)
    if gpus < 1:
        raise BuildError(f"estimate distributed gpus {gpus!r}: must be >= 1")
    compute_seconds = plan.train_flops / (gpus * hw.peak_tflops * 1e12 * plan.mfu)
    if hw.device != "cuda":  # processes on one machine share its cores
        compute_seconds = plan.train_flops / _flops_per_second(plan)
    allreduce = 2 * (gpus - 1) / gpus * 4 * plan.params / (hw.link_gbs * 1e9)
    comm_seconds = plan.train["max_steps"] * allreduce
    where = (f"{gpus} processes sharing the CPU (no speed-up)"
             if hw.device != "cuda" else f"{gpus} GPUs")
    return card(kind, plan.track, hw, gpus, plan.train_flops,
                compute_seconds + comm_seconds, plan.memory["total"],
                f"the {plan.budget.text} plan data-parallel on {where}; "
                f"all-reduce {fmt_duration(allreduce)} per step, "
                f"{comm_seconds / (compute_seconds + comm_seconds):.0%} of the "
                "time if not overlapped")


def _rl(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """GRPO: sample G completions per prompt, score, then reference and policy
    passes over them; sampling is decoding, so it is often the larger part."""
    hw, config, weights = plan.hardware, plan.config, _weight_bytes(plan)
    if min(s["steps"], s["prompts"], s["completion_tokens"]) < 1 or s["group"] < 2:
        raise BuildError("estimate rl: steps, prompts and completion_tokens must "
                         "be >= 1 and group >= 2")
    seqs = s["prompts"] * s["group"]  # sequences per step
    length = min(s["prompt_tokens"] + s["completion_tokens"], config.context_length)
    new = min(s["completion_tokens"], length)
    value_bytes = 4 if hw.dtype == "float32" else 2
    cache = kv_cache_bytes(config, length, seqs, value_bytes)
    per_token = forward_flops_per_token(config, length / 2)
    # sampling: prefill the prompts, then one decoding step per new token
    prefill = seqs * (length - new) * per_token
    decode_flops = seqs * per_token
    decode_seconds = max(decode_flops / _flops_per_second(plan),
                         (weights + cache / 2) / plan.budget.count
                         / (hw.bandwidth_gbs * 1e9))
    sample_seconds = prefill / _flops_per_second(plan) + new * decode_seconds
    passes = 3 + (1 if s["kl"] else 0)  # policy forward + backward, reference
    update_flops = passes * seqs * length * per_token
    update_seconds = update_flops / _flops_per_second(plan)
    step_seconds = sample_seconds + update_seconds
    return card(kind, plan.track, hw, plan.budget.count,
                s["steps"] * (prefill + new * decode_flops + update_flops),
                s["steps"] * step_seconds,
                plan.memory["total"] + weights + cache / plan.budget.count,
                f"{s['steps']} GRPO steps of {s['prompts']} x {s['group']} "
                f"completions, {new} new tokens each, {_size(plan)}: sampling "
                f"{sample_seconds / step_seconds:.0%} of the time")


MODEL_KINDS = {"pretrain": _pretrain, "train": _training, "finetune": _training,
               "shards": _shards, "step": _step, "loss": _loss, "sweep": _sweep,
               "eval": _forward, "quantize": _forward, "inference": _decoding,
               "serve": _decoding, "distributed": _distributed, "rl": _rl}
