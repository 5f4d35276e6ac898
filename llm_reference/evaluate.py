"""Evaluating a language model on held-out text.

All numbers come from the validation split, which training never sees:

- **loss**: mean next-token cross-entropy, in nats per token;
- **perplexity** = exp(loss): the model is as unsure as a uniform choice among that
  many tokens;
- **bits per byte** = loss * tokens / (bytes * ln 2): the same quantity per byte of
  UTF-8 text, which does not depend on the tokenizer, so models with different
  vocabularies can be compared;
- **accuracy**: how often the most likely next token is the right one;
- **cloze**: held-out lines with their last word blanked; the model picks the answer
  among distractors (other words of the held-out text) by log-likelihood per byte.
  Accuracy well above chance (1 / choices) means the model uses the context, not
  just word frequencies.

Why per byte: a continuation's log-likelihood is a sum over its tokens, so a longer
choice scores lower whatever its meaning; comparing sums picks the shortest choice
(an untrained model, scored by sums, beat chance by far). Dividing by the choice's
length in bytes, as lm-evaluation-harness's `acc_norm` does, removes that bias.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import regex
import torch
import torch.nn.functional as F
from torch import nn

from .atomic import write_json
from .config import resolve_device
from .errors import UserError

IDENTIFIER = regex.compile(r"[^\W\d]\w{2,}")  # a word or identifier of 3+ characters


@torch.no_grad()
def mean_loss(
    model: nn.Module,
    batches: Any,
    indices: Iterable[int],
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float:
    """Mean loss over the batches `batches.get(i)` for i in `indices`."""
    was_training = model.training
    model.eval()
    losses = []
    for i in indices:
        x, y = batches.get(i)  # (B, T), (B, T)
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        losses.append(loss.float())
    model.train(was_training)
    return torch.stack(losses).mean().item()


@torch.no_grad()
def language_model_metrics(
    model: nn.Module, tokenizer: Any, batches: Any, n_batches: int,
    device: torch.device,
) -> dict[str, float]:
    """Loss, perplexity, bits per byte and next-token accuracy over `n_batches`."""
    model.eval()
    nats = 0.0
    correct = tokens = n_bytes = 0
    for i in range(n_batches):
        x, y = batches.get(i)  # (B, T), (B, T)
        logits, _ = model(x.to(device))  # (B, T, V)
        logits, y = logits.float(), y.to(device)
        nats += F.cross_entropy(logits.flatten(0, 1), y.flatten(),
                                reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        tokens += y.numel()
        n_bytes += sum(len(tokenizer.decode(row).encode("utf-8")) for row in y.tolist())
    loss = nats / tokens
    return {
        "val_loss": loss,
        "perplexity": math.exp(loss),
        "bits_per_byte": loss * tokens / (n_bytes * math.log(2)),
        "accuracy": correct / tokens,
        "tokens": tokens,
        "bytes": n_bytes,
    }


# ------------------------------------------------------------------------- cloze


@dataclass
class ClozeItem:
    """Predict `choices[answer]` after `context`; `tail` is the rest of its line."""

    context: str
    choices: list[str]
    answer: int
    tail: str


def build_cloze(
    texts: Iterable[str], n_items: int, n_choices: int = 4, seed: int = 0
) -> list[ClozeItem]:
    """Cloze items from held-out text windows, one per window.

    In each window we take a complete line (not the window's first or last, which may
    be cut) and blank its last word; the context is the window's text before it. The
    distractors are other words of the held-out text, drawn as often as they occur
    there: the answers are such draws too, so a model that ignores the context
    cannot tell them apart (drawn uniformly from the distinct words, distractors
    would be rarer words, which BPE splits into more tokens).
    """
    rng = random.Random(seed)
    texts = list(texts)
    occurrences = [w for t in texts for w in IDENTIFIER.findall(t)]
    items = []
    for text in texts:
        lines = text.split("\n")
        start = len(lines[0]) + 1  # skip the first line: it may start mid-word
        candidates = []
        for line in lines[1:-1]:
            words = list(IDENTIFIER.finditer(line))
            if words and "<|" not in line:
                candidates.append((start, line, words[-1]))
            start += len(line) + 1
        if not candidates or len(set(occurrences)) < n_choices:
            continue
        line_start, line, word = rng.choice(candidates)
        answer = word.group()
        choices = [answer]
        while len(choices) < n_choices:
            distractor = rng.choice(occurrences)
            if distractor not in choices:
                choices.append(distractor)
        rng.shuffle(choices)
        context = text[len(lines[0]) + 1:line_start + word.start()]
        tail = line[word.end():] + "\n"
        items.append(ClozeItem(context, choices, choices.index(answer), tail))
        if len(items) == n_items:
            break
    return items


@torch.no_grad()
def continuation_logprob(
    model: nn.Module, tokenizer: Any, context: str, continuations: list[str],
    device: torch.device,
) -> list[float]:
    """Sum of log p(continuation tokens | context) for each continuation, in one batch.

    Spaces before the blank go with the continuation (" name", as BPE splits words);
    the context is cut from the left to fit the model's context length.
    """
    stripped = context.rstrip(" \t")
    spaces = context[len(stripped):]
    ctx_ids = tokenizer.encode(stripped)
    conts = [tokenizer.encode(spaces + c) for c in continuations]
    T = model.config.context_length
    rows = [(ctx_ids + c)[-T:] for c in conts]
    width = max(len(r) for r in rows)
    idx = torch.zeros(len(rows), width, dtype=torch.long)  # (N, W), right-padded
    for i, r in enumerate(rows):
        idx[i, :len(r)] = torch.tensor(r)
    logits, _ = model(idx.to(device))  # (N, W, V)
    logprobs = logits.float().log_softmax(-1).cpu()  # (N, W, V)
    scores = []
    for i, (row, cont) in enumerate(zip(rows, conts)):
        n = min(len(cont), len(row) - 1)  # continuation tokens that have a context
        positions = range(len(row) - n, len(row))
        scores.append(sum(logprobs[i, p - 1, row[p]].item() for p in positions))
    return scores


def cloze_accuracy(
    model: nn.Module, tokenizer: Any, items: list[ClozeItem], device: torch.device
) -> dict[str, float]:
    """Fraction of items where the true word (+ rest of line) is the most likely
    per byte (the harness's `acc_norm`)."""
    if not items:
        raise UserError("no cloze items: the held-out text has no usable lines; "
                        "pass --cloze 0 to skip the cloze eval")
    model.eval()
    right = 0
    for item in items:
        choices = [c + item.tail for c in item.choices]
        logprobs = continuation_logprob(model, tokenizer, item.context, choices,
                                        device)
        scores = [lp / len(c.encode("utf-8")) for lp, c in zip(logprobs, choices)]
        right += max(range(len(scores)), key=scores.__getitem__) == item.answer
    n_choices = len(items[0].choices)
    return {"items": len(items), "choices": n_choices,
            "accuracy": right / len(items), "chance": 1 / n_choices}


# ---------------------------------------------------------------------- a run


def evaluate_run(
    run_dir: str | Path, step: int | None = None, n_batches: int | None = None,
    n_cloze: int = 100, n_choices: int = 4, data_dir: str | None = None,
    device: str = "auto", load_model: Callable | None = None,
) -> dict[str, Any]:
    """Every metric above for a run's checkpoint, written to RUN/eval.json; or for
    any model folder that `load_model(path, step, device)` reads (the command line
    passes `artifacts.load_model`: quantized, release and HF folders too)."""
    from .config import TrainConfig
    from .data import Batches

    if load_model is None:
        from .checkpoint import load_model

    if n_batches is not None and n_batches < 1:
        raise UserError(f"--batches {n_batches}: must be >= 1")
    if n_cloze < 0 or n_choices < 2:
        raise UserError(f"--cloze {n_cloze} must be >= 0 and --choices {n_choices} "
                        ">= 2")
    dev = resolve_device(device)
    model, tokenizer, info = load_model(run_dir, step, str(dev))
    kind, train = info.get("kind", "run"), info["config"].get("train")
    if train is None and data_dir is None:
        raise UserError(f"{run_dir} is a {kind} folder that does not record its "
                        "training data; pass --data with a prepared folder")
    train = train or TrainConfig().__dict__
    data_dir = data_dir or train["data_dir"]
    if not (Path(data_dir) / "meta.json").is_file():
        raise UserError(f"held-out data {data_dir}/meta.json not found; pass --data "
                        "with a folder written by `prepare`")
    data_tokenizer = type(tokenizer).load(Path(data_dir) / "tokenizer.json")
    if (data_tokenizer.vocab, data_tokenizer.special_tokens) != (
            tokenizer.vocab, tokenizer.special_tokens):
        raise UserError(f"--data {data_dir} was tokenized with another tokenizer "
                        "than the model's; pass data prepared with the model's "
                        "tokenizer.json")
    n_batches = n_batches or train["eval_steps"]
    T = model.config.context_length
    batches = Batches(data_dir, "val", train["batch_size"], T, seed=train["seed"])
    result = {"run": str(run_dir), "kind": kind, "step": info["step"],
              "data_dir": data_dir,
              "batches": n_batches, "batch_size": train["batch_size"],
              **language_model_metrics(model, tokenizer, batches, n_batches, dev)}
    result["cloze"] = None
    if n_cloze:
        # Twice as many held-out windows as items: a few have no usable line.
        windows = Batches(data_dir, "val", 2 * n_cloze, T, seed=train["seed"] + 1)
        texts = [tokenizer.decode(row) for row in windows.get(0)[0].tolist()]
        items = build_cloze(texts, n_cloze, n_choices, seed=train["seed"])
        result["cloze"] = cloze_accuracy(model, tokenizer, items, dev)
    if kind == "run":  # other folders are finished artifacts: not touched
        write_json(Path(run_dir) / "eval.json", result)
    return result
