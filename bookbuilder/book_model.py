"""The book's shared model, for the experiments that declare `"needs": ["book_model"]`.

`book/experiments/book_model.py` prepares the default corpus and pretrains one small
GPT on it, once per build (cached like every experiment). The chapters after
pretraining start from it instead of each training a toy of its own:

    from bookbuilder import book_model

    book = book_model.load()          # a fresh copy: change it freely
    book.model, book.tokenizer        # the GPT (eval mode) and its tokenizer
    book.run_dir, book.data_dir       # what `train` and `prepare` wrote: read only
    book.summary["val_loss"]          # the numbers in book_model.json

The folders are the builder's cache, shared by every experiment that needs the
model: read them, and copy one (`shutil.copytree`) before writing into it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_reference.checkpoint import load_model
from llm_reference.model import GPT

from . import needs

NAME = "book_model"  # the experiment's file name, without .py


@dataclass(frozen=True)
class BookModel:
    model: GPT               # the last checkpoint, in eval mode
    tokenizer: Any           # llm_reference.tokenizer.Tokenizer
    run_dir: Path            # config.toml, tokenizer.json, metrics.jsonl, checkpoints/
    data_dir: Path           # manifest.json, tokenizer.json, the train and val shards
    summary: dict[str, Any]  # book_model.json: config, tokens, losses, samples


def folder() -> Path:
    """The files the book_model experiment wrote (data/, run/, book_model.json)."""
    return needs.folder(NAME)


def load(device: str = "cpu") -> BookModel:
    """A fresh copy of the book's model, with its tokenizer, folders and numbers."""
    root = folder()
    model, tokenizer, _ = load_model(root / "run", device=device)
    summary = json.loads((root / "book_model.json").read_text(encoding="utf-8"))
    return BookModel(model, tokenizer, root / "run", root / "data", summary)
