"""Fine-tuning a pretrained run: instruction SFT, LoRA and DPO.

Pretraining teaches a model to continue text; fine-tuning teaches it a behaviour.

- **SFT** (supervised fine-tuning) trains on conversations written in the chat
  template (`chat.py`) with the same next-token loss as pretraining, but only the
  assistant's tokens count: every other target is -100, the index that
  `F.cross_entropy` ignores. The model learns to answer, not to imitate users.
- **LoRA** (`lora.py`) is SFT where the base weights stay frozen and only small
  low-rank adapters learn.
- **DPO** (`dpo.py`) trains on preference pairs against a frozen reference copy.

Short examples waste most of a context window, so SFT *packs* several into one row,
each followed by `<|endoftext|>`. We do not reset attention between packed examples:
a token may attend to the examples before it in its row (cross-contamination). The
model met exactly this in pretraining, where documents are packed the same way and
`<|endoftext|>` marks the boundary, and the loss only ever scores an example's own
reply; a block-diagonal attention mask would remove the leak at the cost of a custom
mask in every layer. `--no-pack` puts one example per row (padded) to compare.

The default dataset needs no download: every documented function of the standard
library gives a conversation "Write the docstring for `def f(a, b=1)`." -> the first
paragraph of its docstring. A hash of each conversation puts it in the held-out split,
so the split never depends on the order or number of examples. (The pretraining
corpus is the same stdlib source, so the model has seen these docstrings in context;
the held-out split measures the learned format, not unseen knowledge.) DPO's default
pairs are built from the same conversations (see `dpo.pairs_from_conversations`).

`python -m llm_reference finetune --run RUN --method sft --out OUT` writes a new run
folder in the layout of `train` (checkpoints/, config.toml, tokenizer.json,
metrics.jsonl, loss.png) plus finetune.json, so eval, generate and serve work on it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from tqdm import tqdm

from . import checkpoint
from .atomic import write_bytes, write_json, write_text
from .chat import ENDOFTEXT, IM_END, check_messages, encode_chat, tokenize_chat
from .config import resolve_device, to_toml
from .dpo import (
    PreferencePair,
    collate_pairs,
    dpo_step,
    encode_pair,
    load_preferences,
    pairs_from_conversations,
    read_jsonl,
    reference_copy,
)
from .errors import UserError
from .generate import generate
from .lora import LoRAConfig, apply_lora, merge_lora, save_adapters
from .metrics_plot import plot_metrics
from .optim import make_optimizer
from .schedule import lr_at
from .train import seed_everything

IGNORE_INDEX = -100  # targets with this value add nothing to the loss
METHODS = ("sft", "lora", "dpo")
DEFAULT_LR = {"sft": 3e-4, "lora": 2e-3, "dpo": 1e-4}

# ---------------------------------------------------------------------- SFT data


def docstring_conversation(signature: str, docstring: str) -> list[dict]:
    """One default SFT example: a function's signature in, its docstring out."""
    return [{"role": "user", "content": f"Write the docstring for `{signature}`."},
            {"role": "assistant", "content": docstring}]


def function_docstrings(source: str, max_chars: int = 300) -> Iterable[tuple[str, str]]:
    """(signature, docstring summary) for each documented function in `source`.

    The summary is the docstring's first paragraph; very short or very long ones
    (and long signatures) are skipped, so examples fit a small context.
    """
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        docstring = ast.get_docstring(node)
        if not docstring:
            continue
        summary = docstring.split("\n\n")[0].strip()
        keyword = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
        signature = f"{keyword} {node.name}({ast.unparse(node.args)})"
        if 10 <= len(summary) <= max_chars and len(signature) <= 120:
            yield signature, summary


def stdlib_conversations(files: Iterable[Path] | None = None) -> list[list[dict]]:
    """The default SFT data: docstring conversations from the stdlib's .py files.

    Files are read in sorted order and exact duplicates dropped: deterministic.
    """
    if files is None:
        from .sources import stdlib_files

        files = stdlib_files()[1]
    seen: set[tuple[str, str]] = set()
    conversations = []
    for path in files:
        try:
            pairs = list(function_docstrings(Path(path).read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few stdlib files are deliberately not valid Python 3
        for pair in pairs:
            if pair not in seen:
                seen.add(pair)
                conversations.append(docstring_conversation(*pair))
    return conversations


def load_conversations(path: str | Path) -> list[list[dict]]:
    """Read JSONL lines {"messages": [{"role": ..., "content": ...}, ...]}."""
    conversations = []
    for number, record in read_jsonl(path):
        messages = check_messages(record.get("messages"), f"{path}:{number} messages")
        if not any(m["role"] == "assistant" for m in messages):
            raise UserError(f"{path}:{number}: no assistant message, nothing to learn")
        conversations.append(messages)
    return conversations


def is_held_out(example: Any, val_fraction: float) -> bool:
    """Put an example (a conversation, a preference pair) in the held-out split by a
    hash of its JSON text: the same example always lands on the same side."""
    digest = hashlib.sha256(json.dumps(example, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def split_held_out(conversations: list[list[dict]], val_fraction: float
                   ) -> tuple[list[list[dict]], list[list[dict]]]:
    """(train, val): deterministic, independent of order and of the other examples."""
    val = [c for c in conversations if is_held_out(c, val_fraction)]
    train = [c for c in conversations if not is_held_out(c, val_fraction)]
    return train, val


# ------------------------------------------------------------ masking and packing


def make_targets(ids: list[int], loss_mask: list[int]) -> list[int]:
    """Next-token targets for inputs ids[:-1]: the next id where it is trained,
    IGNORE_INDEX (-100) elsewhere, so prompts add nothing to the loss or gradient.
    """
    pairs = zip(ids[1:], loss_mask[1:])
    return [token if trained else IGNORE_INDEX for token, trained in pairs]


def pack_examples(encoded: list[tuple[list[int], list[int]]], context_length: int,
                  eot_id: int, pack: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of inputs x and targets y, each (N, T) with T = context_length.

    Each example (ids, loss mask) is followed by <|endoftext|> (not trained) and
    placed whole into a row of T + 1 tokens: after the previous examples when
    `pack` and it fits, else in a new row. Rows are padded with <|endoftext|>,
    whose targets are ignored. Examples must fit a row (see `fits`).
    """
    rows: list[tuple[list[int], list[int]]] = []
    ids: list[int] = []
    mask: list[int] = []
    for example_ids, example_mask in encoded:
        if not fits(example_ids, context_length):
            raise ValueError(f"an example of {len(example_ids)} tokens does not fit")
        example_ids, example_mask = [*example_ids, eot_id], [*example_mask, 0]
        if ids and (not pack or len(ids) + len(example_ids) > context_length + 1):
            rows.append((ids, mask))
            ids, mask = [], []
        ids, mask = ids + example_ids, mask + example_mask
    if ids:
        rows.append((ids, mask))
    x = torch.full((len(rows), context_length), eot_id, dtype=torch.long)  # (N, T)
    y = torch.full((len(rows), context_length), IGNORE_INDEX, dtype=torch.long)
    for n, (row_ids, row_mask) in enumerate(rows):
        x[n, :len(row_ids) - 1] = torch.tensor(row_ids[:-1])
        y[n, :len(row_ids) - 1] = torch.tensor(make_targets(row_ids, row_mask))
    return x, y


def fits(ids: list[int], context_length: int) -> bool:
    """An example and its <|endoftext|> fit in one row of context_length + 1."""
    return len(ids) <= context_length


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def batch_indices(n: int, batch_size: int, seed: int, index: int) -> list[int]:
    """Items of batch `index`: every item once per epoch, a seeded shuffle each epoch.

    Like `data.Batches`, batch `index` depends only on (seed, index): reproducible.
    """
    positions = range(index * batch_size, (index + 1) * batch_size)
    return [_epoch_order(n, seed, p // n)[p % n] for p in positions]


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


# ---------------------------------------------------------------------- settings


@dataclass
class FinetuneSettings:
    """Everything that decides a fine-tune's result (saved in finetune.json)."""

    method: str = "sft"
    max_steps: int = 300
    batch_size: int = 16
    lr: float | None = None  # None: DEFAULT_LR[method]
    min_lr_ratio: float = 0.1  # the cosine schedule ends at lr * min_lr_ratio
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_interval: int = 50
    eval_batches: int = 10
    val_fraction: float = 0.05
    max_examples: int | None = None
    pack: bool = True
    seed: int = 1337
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("attn.qkv", "attn.proj")
    beta: float = 0.1

    def check(self) -> None:
        """Reject bad values before any work starts."""
        if self.method not in METHODS:
            raise UserError(f"--method {self.method}: choose one of "
                            f"{', '.join(METHODS)}")
        for name in ("max_steps", "batch_size", "eval_interval", "eval_batches"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1")
        if self.lr is not None and self.lr <= 0:
            raise UserError(f"--lr {self.lr}: must be > 0")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"--val-fraction {self.val_fraction}: must be in [0, 1)")
        if self.max_examples is not None and self.max_examples < 1:
            raise UserError(f"--max-examples {self.max_examples}: must be >= 1")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"--min-lr-ratio {self.min_lr_ratio}: must be in [0, 1]")
        if self.beta <= 0:
            raise UserError(f"--beta {self.beta}: must be > 0")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise UserError("--warmup-steps, --weight-decay and --grad-clip must "
                            "be >= 0")
        if self.method == "lora":
            self.lora_config()  # validates rank, alpha, dropout, targets

    @property
    def peak_lr(self) -> float:
        return DEFAULT_LR[self.method] if self.lr is None else self.lr

    def lora_config(self) -> LoRAConfig:
        return LoRAConfig(self.lora_rank, self.lora_alpha, self.lora_dropout,
                          tuple(self.lora_targets))


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
    bar = tqdm(total=s.max_steps, desc=s.method, unit="step", file=sys.stderr,
               disable=None, dynamic_ncols=True)
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
            bar.update()
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.1e}")
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


# -------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    d = FinetuneSettings()
    add = parser.add_argument
    add("--run", required=True, metavar="DIR",
        help="the base run folder (from `train`, or an earlier fine-tune)")
    add("--step", type=int, metavar="N",
        help="the base run's checkpoint step (default: the latest)")
    add("--method", choices=METHODS, default="sft",
        help="sft: full fine-tune on chat data; lora: SFT with low-rank adapters on "
             "a frozen model; dpo: preference pairs vs a frozen reference "
             "(default: sft)")
    add("--out", required=True, metavar="DIR",
        help="output folder: metrics.jsonl, loss.png, finetune.json, and a run "
             "(checkpoints/, config.toml, tokenizer.json) for sft, dpo and lora "
             "--merge; adapter.safetensors + adapter.json for lora")
    add("--data", metavar="FILE.jsonl",
        help='training data. sft/lora: lines {"messages": [{"role", "content"}, '
             '...]}; dpo: lines {"prompt", "chosen", "rejected"}. Default: built '
             "offline from the stdlib (signature -> docstring; for dpo the rejected "
             "reply is another function's docstring)")
    add("--max-steps", type=int, default=d.max_steps, metavar="N",
        help=f"optimizer steps (default: {d.max_steps})")
    add("--batch-size", type=int, default=d.batch_size, metavar="N",
        help=f"rows (sft/lora) or preference pairs (dpo) per step "
             f"(default: {d.batch_size})")
    add("--lr", type=float, default=None,
        help="peak learning rate (default: " + ", ".join(
            f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    add("--min-lr-ratio", type=float, default=d.min_lr_ratio, metavar="R",
        help=f"the cosine decay ends at lr * R (default: {d.min_lr_ratio})")
    add("--warmup-steps", type=int, default=d.warmup_steps, metavar="N",
        help=f"linear warmup steps (default: {d.warmup_steps})")
    add("--weight-decay", type=float, default=d.weight_decay, metavar="WD",
        help=f"AdamW weight decay on matrices (default: {d.weight_decay})")
    add("--grad-clip", type=float, default=d.grad_clip, metavar="NORM",
        help=f"max global gradient norm; 0 = no clipping (default: {d.grad_clip})")
    add("--eval-interval", type=int, default=d.eval_interval, metavar="N",
        help=f"steps between held-out evaluations (default: {d.eval_interval})")
    add("--eval-batches", type=int, default=d.eval_batches, metavar="N",
        help=f"held-out batches per evaluation (default: {d.eval_batches})")
    add("--val-fraction", type=float, default=d.val_fraction, metavar="F",
        help="share of examples held out, chosen by a hash of each example "
             f"(default: {d.val_fraction})")
    add("--max-examples", type=int, metavar="N",
        help="use only the first N training examples (default: all)")
    add("--no-pack", action="store_true",
        help="one example per row instead of packing several into each context "
             "window (sft/lora)")
    add("--seed", type=int, default=d.seed, metavar="N",
        help=f"seed for initialisation and batch order (default: {d.seed})")
    add("--lora-rank", type=int, default=d.lora_rank, metavar="R",
        help=f"rank r of the LoRA update B @ A (default: {d.lora_rank})")
    add("--lora-alpha", type=float, default=d.lora_alpha, metavar="A",
        help=f"LoRA scale: the update is multiplied by alpha / r "
             f"(default: {d.lora_alpha:g})")
    add("--lora-dropout", type=float, default=d.lora_dropout, metavar="P",
        help=f"dropout on the LoRA branch's input (default: {d.lora_dropout})")
    add("--lora-targets", default=",".join(d.lora_targets), metavar="PATTERNS",
        help="comma-separated name patterns of the Linear layers to adapt, e.g. "
             "attn.qkv,attn.proj,mlp.* (default: %(default)s)")
    add("--merge", action="store_true",
        help="lora: also fold the adapters into the weights and write a full run")
    add("--beta", type=float, default=d.beta, metavar="B",
        help=f"dpo: strength of the pull toward the reference model (default: "
             f"{d.beta})")
    add("--device", default="auto", metavar="DEV",
        help="auto, cpu, cuda[:N] or mps (default: auto)")
    add("--force", action="store_true",
        help="replace an earlier fine-tune in --out")


def run(args: argparse.Namespace) -> int:
    settings = FinetuneSettings(
        method=args.method, max_steps=args.max_steps, batch_size=args.batch_size,
        lr=args.lr, min_lr_ratio=args.min_lr_ratio, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        eval_interval=args.eval_interval, eval_batches=args.eval_batches,
        val_fraction=args.val_fraction, max_examples=args.max_examples,
        pack=not args.no_pack, seed=args.seed, lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        lora_targets=tuple(filter(None, map(str.strip, args.lora_targets.split(",")))),
        beta=args.beta)
    result = finetune(args.run, args.out, settings, args.data, args.step, args.merge,
                      args.device, args.force)
    print(format_summary(result))
    return 0


def format_summary(result: dict[str, Any]) -> str:
    """What `finetune` prints at the end: data, parameters, held-out before/after."""
    stats = result["data_stats"]
    unit = "pairs" if result["method"] == "dpo" else "examples"
    lines = [
        f"{result['method']}: {result['settings']['max_steps']} steps on "
        f"{stats['train'][unit]} train {unit} ({stats['val'][unit]} held out, "
        f"{stats['train']['too_long'] + stats['val']['too_long']} too long, skipped)",
        f"trainable parameters: {result['trainable_parameters']:,} of "
        f"{result['total_parameters']:,} "
        f"({result['trainable_parameters'] / result['total_parameters']:.2%})",
    ]
    if "fill" in stats["train"]:
        lines.append(f"packing: {stats['train']['rows']} rows, "
                     f"{stats['train']['fill']:.0%} of tokens used")
    for key in result["after"]:
        lines.append(f"held-out {key.removeprefix('val_')}: "
                     f"{result['before'].get(key, float('nan')):.4f} -> "
                     f"{result['after'][key]:.4f}")
    if not result["after"]:
        lines.append("held-out: no examples (raise --val-fraction to evaluate)")
    sample = result["sample"]
    lines += [f"sample prompt: {sample['prompt'][-1]['content']!r}",
              f"  reference:     {sample['reference']!r}",
              f"  reply before:  {sample['before']!r}",
              f"  reply after:   {sample['after']!r}"]
    lines.append(f"wrote {result['out']}/: {', '.join(result['files'])}")
    return "\n".join(lines)
