"""Supervised fine-tuning data: conversations, a held-out split, masks and packing.

The default dataset needs no download: every documented function of the standard
library gives a conversation "Write the docstring for `def f(a, b=1)`." -> the first
paragraph of its docstring. A hash of each conversation puts it in the held-out split,
so the split never depends on the order or number of examples. (The pretraining
corpus is the same stdlib source, so the model has seen these docstrings in context;
the held-out split measures the learned format, not unseen knowledge.)

`make_targets` masks every target but the assistant's tokens (`IGNORE_INDEX`).
Short examples waste most of a context window, so `pack_examples` puts several into
one row, each followed by `<|endoftext|>`. We do not reset attention between packed
examples: a token may attend to the examples before it in its row
(cross-contamination). The model met exactly this in pretraining, where documents are
packed the same way and `<|endoftext|>` marks the boundary, and the loss only ever
scores an example's own reply; a block-diagonal attention mask would remove the leak
at the cost of a custom mask in every layer. `pack=False` (the command's `--no-pack`)
puts one example per row (padded) to compare.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import torch

from .chat import check_messages
from .dpo import read_jsonl
from .errors import UserError

IGNORE_INDEX = -100  # targets with this value add nothing to the loss

# ------------------------------------------------------------------ conversations


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
