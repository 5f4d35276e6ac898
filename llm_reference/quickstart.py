"""A small trained model in two calls: where experiments and tests start from.

Many steps after pretraining start from "a small model that has seen some text":
fine-tuning, quantization, serving, a release. `tiny_data` prepares a slice of the
offline default corpus (the standard library's sources) with `data.prepare`, and
`tiny_base` pretrains a small GPT on it with `train.train`: the same two steps as

    python -m llm_reference prepare --max-bytes 1M --vocab-size 512 --out data
    python -m llm_reference train --data data --out run --set ...

Both keep what they made in a cache folder, under a key that hashes every setting,
the reference's own source code, the Python and torch versions (and for a run the
thread count): the first call takes up to a minute, the next one with the same
settings returns at once, and a change to the code starts afresh. An entry is made
under a temporary name and renamed when complete, so two processes asking at once
(two pytest workers) never see half of one. The caller's random state is left as it
was, so that what it draws next does not depend on whether the cache held the run.

The cached folders are shared: read them, and copy one (`shutil.copytree`) before
changing it. A command that writes into a run, such as `eval`, would change it for
every later caller. The cache is ~/.cache/llm_reference/quickstart unless a caller
names another folder; entries made by older code are never read again, so deleting
the folder only costs the time to make them anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .config import RunConfig
from .data import PrepareSettings, prepare
from .errors import UserError
from .metrics_plot import read_metrics
from .release import code_sha256
from .sources import default_cache_dir, file_sha256
from .train import train

# the tiny preset's shape with a 128-token context: ~0.9 M parameters at V = 512
TINY_MODEL = {"context_length": 128, "n_layer": 4, "n_head": 4, "d_model": 128}
# short-run settings: a high learning rate, one evaluation and one checkpoint
TINY_TRAIN = {"batch_size": 16, "lr": 3e-3, "warmup_steps": 20, "eval_steps": 4,
              "device": "cpu", "seed": 0}


@dataclass(frozen=True)
class TinyRun:
    """A trained run in the cache: read it, copy it before changing it."""

    folder: Path  # config.toml, tokenizer.json, metrics.jsonl, checkpoints/
    data_dir: Path  # the prepared data it was trained on
    val_loss: float  # the validation loss at its last step


def tiny_data(max_bytes: int = 1_000_000, vocab_size: int = 512,
              val_fraction: float = 0.1, *, cache_dir: str | Path | None = None,
              **settings: Any) -> Path:
    """The folder `prepare` writes for a slice of the standard library, cached.

    `settings` are other `PrepareSettings` fields (near_dup_threshold, redact, ...).
    """
    prepared = PrepareSettings(max_bytes=max_bytes, vocab_size=vocab_size,
                               val_fraction=val_fraction, **settings)
    return cached("data", asdict(prepared),
                  lambda out: prepare(prepared, out, workers=1), cache_dir)


def tiny_base(data_dir: str | Path, steps: int = 150, *,
              model: dict[str, Any] | None = None,
              cache_dir: str | Path | None = None, **train_settings: Any) -> TinyRun:
    """A GPT pretrained for `steps` steps on a prepared folder, cached.

    `model` is the config's [model] table (default TINY_MODEL; the vocabulary is
    the data's); `train_settings` are [train] fields that replace TINY_TRAIN's.
    """
    data_dir = Path(data_dir).resolve()  # the run may be read from anywhere
    if not (data_dir / "manifest.json").is_file():
        raise UserError(f"{data_dir}: no manifest.json; pass a folder written by "
                        "`prepare` (or by tiny_data)")
    config = RunConfig.from_dict({
        "model": {"vocab_size": "auto", **(model or TINY_MODEL)},
        "train": {**TINY_TRAIN, "max_steps": steps, "eval_interval": steps,
                  "checkpoint_interval": steps, **train_settings,
                  "data_dir": str(data_dir)}})
    # the data manifest holds the hashes of the tokenizer and every shard
    data = file_sha256(data_dir / "manifest.json")
    inputs = {"config": config.to_dict(), "data": data,
              "threads": torch.get_num_threads()}  # float sums depend on the split
    folder = cached("run", inputs, lambda out: train(config, out), cache_dir)
    evals = [r for r in read_metrics(folder / "metrics.jsonl") if "val_loss" in r]
    return TinyRun(folder, data_dir, evals[-1]["val_loss"])


@dataclass(frozen=True)
class BookModel:
    """The book's shared model: what `book/experiments/book_model.py` wrote."""

    run: Path  # what `train` wrote: config.toml, checkpoints/, metrics.jsonl
    data: Path  # what `prepare` wrote: tokenizer.json, shards, manifest.json
    summary: dict  # book_model.json: the numbers the chapters quote


def book_model(folder: str | Path | None = None) -> BookModel:
    """The book's model in `folder`, else in $BOOK_MODEL_DIR (the book's builder
    sets it), else in the current folder: where the chapters after pretraining
    start from. Read it; copy `run` (`shutil.copytree`) before changing it."""
    where = Path(folder or os.environ.get("BOOK_MODEL_DIR", ".")).resolve()
    summary = where / "book_model.json"
    if not summary.is_file():
        raise UserError(f"no book model in {where}: run book_model.py first, in this "
                        "folder or with BOOK_MODEL_DIR set to its folder")
    return BookModel(where / "run", where / "data",
                     json.loads(summary.read_text(encoding="utf-8")))


def cached(kind: str, inputs: dict[str, Any], make: Callable[[Path], Any],
           cache_dir: str | Path | None) -> Path:
    """The folder `make(folder)` writes for these inputs, made once per key.

    Entry `KIND-KEY/` holds one folder named `kind` ("data", "run"): the name a
    release or a model card shows.
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir().parent / "quickstart"
    key = hashlib.sha256(json.dumps({
        "kind": kind, "inputs": inputs, "code": code_sha256(),
        "python": sys.version, "torch": torch.__version__,
    }, sort_keys=True).encode()).hexdigest()[:16]
    entry = root / f"{kind}-{key}"
    if not entry.is_dir():
        tmp = root / f".{kind}-{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with random_state_kept():
                make(tmp / kind)
            try:
                os.rename(tmp, entry)
            except OSError:  # another process made the same entry first: use it
                if not entry.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return entry / kind


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global random state on the way out."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
