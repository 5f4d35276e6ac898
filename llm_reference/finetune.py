"""Fine-tuning a pretrained run: instruction SFT, LoRA and DPO.

Pretraining teaches a model to continue text; fine-tuning teaches it a behaviour.

- **SFT** (supervised fine-tuning) trains on conversations written in the chat
  template (`chat.py`) with the same next-token loss as pretraining, but only the
  assistant's tokens count: every other target is -100, the index that
  `F.cross_entropy` ignores. The model learns to answer, not to imitate users.
- **LoRA** (`lora.py`) is SFT where the base weights stay frozen and only small
  low-rank adapters learn.
- **DPO** (`dpo.py`) trains on preference pairs against a frozen reference copy.

The data side of SFT (the default stdlib conversations, the held-out split, prompt
masking and packing) is in `sft_data.py`; DPO's default pairs are built from the same
conversations (see `dpo.pairs_from_conversations`). `finetune_settings.py` holds the
settings that decide a fine-tune's result.

`python -m llm_reference finetune --run RUN --method sft --out OUT` writes a new run
folder in the layout of `train` (checkpoints/, config.toml, tokenizer.json,
metrics.jsonl, loss.png) plus finetune.json, so eval, generate and serve work on it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from . import checkpoint
from .atomic import write_bytes, write_json, write_text
from .chat import ENDOFTEXT, IM_END, encode_chat, tokenize_chat
from .config import resolve_device, to_toml
from .dpo import (
    PreferencePair,
    collate_pairs,
    dpo_step,
    encode_pair,
    load_preferences,
    pairs_from_conversations,
    reference_copy,
)
from .errors import UserError
from .finetune_settings import FinetuneSettings
from .generate import generate
from .lora import apply_lora, merge_lora, save_adapters
from .metrics_plot import plot_metrics
from .optim import make_optimizer
from .progress import Progress
from .schedule import lr_at
from .sft_data import (
    IGNORE_INDEX,
    batch_indices,
    fits,
    is_held_out,
    load_conversations,
    pack_examples,
    split_held_out,
    stdlib_conversations,
)
from .train import seed_everything

# ------------------------------------------------------------------------ tasks


class SFTTask:
    """Packed, masked next-token prediction on conversations (SFT and LoRA)."""

    def __init__(self, tokenizer: Any, train: list[list[dict]], val: list[list[dict]],
                 context_length: int, batch_size: int, seed: int, pack: bool = True):
        self.batch_size, self.seed = batch_size, seed
        eot = tokenizer.special_tokens[ENDOFTEXT]
        stats = {}
        for split, conversations in (("train", train), ("val", val)):
            encoded = [tokenize_chat(tokenizer, c) for c in conversations]
            kept = [e for e in encoded if fits(e[0], context_length)]
            x, y = pack_examples(kept, context_length, eot, pack)
            setattr(self, split, (x, y))
            used = sum(len(ids) + 1 for ids, _ in kept)  # + <|endoftext|>
            stats[split] = {"examples": len(kept),
                            "too_long": len(encoded) - len(kept), "rows": len(x),
                            "trained_tokens": int((y != IGNORE_INDEX).sum()),
                            "fill": used / max(1, x.numel() + len(x))}
        if not stats["train"]["examples"]:
            raise UserError(f"no training example fits model.context_length = "
                            f"{context_length} tokens; use shorter examples")
        self.stats = stats
        self.example = (val or train)[0]  # a conversation to show replies for

    def loss(self, model: torch.nn.Module, index: int, device: torch.device
             ) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = self.train
        rows = batch_indices(len(x), self.batch_size, self.seed, index)
        _, loss = model(x[rows].to(device), y[rows].to(device))
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, n_batches: int, device: torch.device
                 ) -> dict[str, float]:
        """Masked loss over the first rows of the held-out split (token-weighted)."""
        x, y = self.val
        x, y = x[:n_batches * self.batch_size], y[:n_batches * self.batch_size]
        if not len(x):
            return {}
        total, tokens = 0.0, 0
        for start in range(0, len(x), self.batch_size):
            xb, yb = x[start:start + self.batch_size], y[start:start + self.batch_size]
            n = int((yb != IGNORE_INDEX).sum())
            if n:
                _, loss = model(xb.to(device), yb.to(device))
                total, tokens = total + loss.item() * n, tokens + n
        return {"val_loss": total / tokens} if tokens else {}


class DPOTask:
    """Preference pairs scored against a frozen reference copy of the start model."""

    def __init__(self, tokenizer: Any, model: torch.nn.Module,
                 train: list[PreferencePair], val: list[PreferencePair],
                 batch_size: int, seed: int, beta: float):
        self.batch_size, self.seed, self.beta = batch_size, seed, beta
        self.pad_id = tokenizer.special_tokens[ENDOFTEXT]
        self.reference = reference_copy(model)
        T = model.config.context_length
        self.stats = {}
        for split, pairs in (("train", train), ("val", val)):
            encoded = [encode_pair(tokenizer, p) for p in pairs]
            kept = [(chosen, rejected) for chosen, rejected in encoded
                    if len(chosen[0]) <= T + 1 and len(rejected[0]) <= T + 1]
            setattr(self, split, kept)
            self.stats[split] = {"pairs": len(kept),
                                 "too_long": len(encoded) - len(kept)}
        if not self.train:
            raise UserError(f"no preference pair fits model.context_length = {T} "
                            "tokens; use shorter prompts and replies")
        pair = (val or train)[0]
        self.example = [*pair.prompt, {"role": "assistant", "content": pair.chosen}]

    def loss(self, model: torch.nn.Module, index: int, device: torch.device
             ) -> tuple[torch.Tensor, dict[str, float]]:
        chosen = batch_indices(len(self.train), self.batch_size, self.seed, index)
        ids, mask = collate_pairs([self.train[i] for i in chosen], self.pad_id)
        return dpo_step(model, self.reference, ids.to(device), mask.to(device),
                        self.beta)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, n_batches: int, device: torch.device
                 ) -> dict[str, float]:
        """Mean DPO loss, reward margin and reward accuracy on held-out pairs."""
        pairs = self.val[:n_batches * self.batch_size]
        totals: dict[str, float] = {}
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start:start + self.batch_size]
            ids, mask = collate_pairs(batch, self.pad_id)
            loss, metrics = dpo_step(model, self.reference, ids.to(device),
                                     mask.to(device), self.beta)
            for key, value in {"loss": loss.item(), **metrics}.items():
                key = f"val_{key}"
                totals[key] = totals.get(key, 0.0) + value * len(batch)
        return {key: value / len(pairs) for key, value in totals.items()}


# ------------------------------------------------------------------------- loop


def build_task(settings: FinetuneSettings, model: torch.nn.Module, tokenizer: Any,
               data: str | Path | None) -> SFTTask | DPOTask:
    """Read (or build) the data, split it and encode it for the method."""
    if settings.method == "dpo" and data is not None:
        pairs = load_preferences(data)
        held_out = [is_held_out(dataclasses.asdict(p), settings.val_fraction)
                    for p in pairs]
        train = [p for p, out in zip(pairs, held_out) if not out]
        val = [p for p, out in zip(pairs, held_out) if out]
    else:
        conversations = (load_conversations(data) if data is not None
                         else stdlib_conversations())
        train, val = split_held_out(conversations, settings.val_fraction)
        if settings.method == "dpo":
            train = pairs_from_conversations(train, settings.seed)
            val = pairs_from_conversations(val, settings.seed) if len(val) > 1 else []
    train = train[:settings.max_examples]
    if settings.method == "dpo":
        return DPOTask(tokenizer, model, train, val, settings.batch_size,
                       settings.seed, settings.beta)
    return SFTTask(tokenizer, train, val, model.config.context_length,
                   settings.batch_size, settings.seed, settings.pack)


def finetune(run_dir: str | Path, out: str | Path, settings: FinetuneSettings,
             data: str | Path | None = None, step: int | None = None,
             merge: bool = False, device: str = "auto", force: bool = False
             ) -> dict[str, Any]:
    """Fine-tune the run in `run_dir` into the folder `out`; return a summary."""
    settings.check()
    run_dir, out = Path(run_dir), Path(out)
    prepare_out_dir(run_dir, out, force)
    dev = resolve_device(device)
    model, tokenizer, base_state = checkpoint.load_model(run_dir, step, str(dev))
    seed_everything(settings.seed)
    task = build_task(settings, model, tokenizer, data)
    make_out_dir(out)  # only now: a bad run, step or data leaves no folder behind
    if settings.method == "lora":
        layers = apply_lora(model, settings.lora_config())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = make_optimizer(model, settings.peak_lr, settings.weight_decay)
    metrics_path = out / "metrics.jsonl"
    before = task.evaluate(model.eval(), settings.eval_batches, dev)
    reply_before = sample_reply(model, tokenizer, task.example)
    after = train_loop(model, optimizer, task, settings, dev, metrics_path)
    reply_after = sample_reply(model, tokenizer, task.example)
    plot_metrics(metrics_path, out / "loss.png")

    record = {"method": settings.method, "base_run": str(run_dir),
              "base_step": base_state["step"], "data": str(data or "stdlib docstrings"),
              "settings": dataclasses.asdict(settings), "data_stats": task.stats,
              "trainable_parameters": trainable,
              "total_parameters": sum(p.numel() for p in model.parameters()),
              "before": before, "after": after,
              "sample": {"prompt": task.example[:-1],
                         "reference": task.example[-1]["content"],
                         "before": reply_before, "after": reply_after}}
    files = ["metrics.jsonl", "loss.png", "finetune.json"]
    if settings.method == "lora":
        record["lora_layers"] = layers
        save_adapters(model, settings.lora_config(), out,
                      {"base_run": str(run_dir), "base_step": base_state["step"]})
        files += ["adapter.safetensors", "adapter.json"]
    if settings.method != "lora" or merge:
        if settings.method == "lora":
            merge_lora(model)
            optimizer = torch.optim.AdamW(model.parameters())  # no state to resume
        path = save_run(out, run_dir, model, optimizer, base_state, record,
                        settings.max_steps)
        files += [str(path.relative_to(out)), "config.toml", "tokenizer.json"]
    write_json(out / "finetune.json", record)
    return {**record, "out": str(out), "files": files}


def train_loop(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               task: SFTTask | DPOTask, settings: FinetuneSettings,
               device: torch.device, metrics_path: Path) -> dict[str, float]:
    """AdamW steps with warmup + cosine decay and clipping; returns the last eval."""
    s = settings
    params = [p for p in model.parameters() if p.requires_grad]
    bar = Progress(s.max_steps, desc=s.method)  # a bar, or a line every 10 s in a log
    last_eval: dict[str, float] = {}
    with open(metrics_path, "w", encoding="utf-8") as log:  # a log, line by line
        for step in range(s.max_steps):
            start = time.perf_counter()
            lr = lr_at(step, schedule="cosine", lr=s.peak_lr,
                       min_lr=s.peak_lr * s.min_lr_ratio,
                       warmup_steps=s.warmup_steps, max_steps=s.max_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            loss, metrics = task.loss(model, step, device)
            loss.backward()
            max_norm = s.grad_clip if s.grad_clip > 0 else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            record = {"step": step + 1, "loss": loss.item(), "lr": lr,
                      "grad_norm": grad_norm.item(), **metrics,
                      "seconds": time.perf_counter() - start}
            if (step + 1) % s.eval_interval == 0 or step + 1 == s.max_steps:
                last_eval = task.evaluate(model.eval(), s.eval_batches, device)
                record.update(last_eval)
            log.write(json.dumps(record) + "\n")
            log.flush()
            bar.update(step + 1, loss=record["loss"], lr=lr)
    bar.close()
    return last_eval


def sample_reply(model: torch.nn.Module, tokenizer: Any, conversation: list[dict],
                 max_new_tokens: int = 48) -> str:
    """The model's greedy reply to a conversation without its last (assistant) turn."""
    prompt = encode_chat(tokenizer, conversation[:-1])
    stop = tokenizer.special_tokens[IM_END]
    reply = generate(model, prompt, max_new_tokens, temperature=0.0, stop_ids=[stop])
    return tokenizer.decode(list(reply))


def prepare_out_dir(run_dir: Path, out: Path, force: bool) -> None:
    """Refuse to overwrite the base run or an earlier result (unless --force)."""
    if out.resolve() == run_dir.resolve():
        raise UserError(f"--out {out} is the base run; choose a new folder")
    if checkpoint.list_checkpoints(out) or (out / "finetune.json").exists():
        if not force:
            raise UserError(f"{out} already holds a fine-tune; pass --force to "
                            "replace it or choose another --out")
        shutil.rmtree(out / checkpoint.CHECKPOINTS, ignore_errors=True)
        (out / "finetune.json").unlink(missing_ok=True)


def make_out_dir(out: Path) -> None:
    """Create --out once the inputs have loaded; an unwritable one is a UserError."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {out}: {e.strerror}") from None


def save_run(out: Path, run_dir: Path, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, base_state: dict[str, Any],
             record: dict[str, Any], step: int) -> Path:
    """Write the fine-tuned model as a run: checkpoint, config.toml, tokenizer.json.

    The `[train]` table is the base run's, so `eval` measures the fine-tuned model
    on the base run's held-out pretraining data; the fine-tune's own settings are in
    finetune.json and in the checkpoint's state.
    """
    config = {"model": model.config.to_dict(), "train": base_state["config"]["train"]}
    write_text(out / "config.toml", to_toml(config))
    write_bytes(out / "tokenizer.json", (run_dir / "tokenizer.json").read_bytes())
    state = {"data_position": step, "config": config, "tokenizer": "tokenizer.json",
             "finetune": {k: record[k] for k in ("method", "base_run", "base_step",
                                                 "settings")}}
    return checkpoint.save_checkpoint(out, step, model, optimizer, state, keep_last=1)
