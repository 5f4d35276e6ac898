"""Token shards: fixed-size files of raw token ids, written so that a crash costs
at most one shard.

A split's documents become one long stream of ids, cut into `{split}_000.bin`,
`{split}_001.bin`, … of exactly `shard_tokens` ids each (the last one shorter). The
ids arrive in numbered *chunks* (the encoder's unit of work). `ShardWriter` streams
them into a temporary file and renames it only when the shard is full, and then
knows where the next shard starts: at token `offset` of chunk `chunk`. That
position, with the list of finished shards, is all a resumed run needs: it skips the
chunks before it, drops `offset` ids of the one it lands in, and carries on, so the
bytes on disk equal those of a run that was never stopped.

`progress.json` records those positions after every shard, beside a fingerprint of
the settings and the tokenizer; a resume with other settings starts over.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_open, write_json

PROGRESS = "progress.json"
SHARD_NAME = re.compile(r"(train|val)_\d{3,}\.bin")
TEMPORARY = re.compile(r"\..+\.tmp")  # what `atomic_open` writes before its rename


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer that holds every token id, little-endian."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


@dataclass
class Position:
    """Where a split's stream continues: token `offset` of chunk number `chunk`."""

    chunk: int = 0
    offset: int = 0
    shards: list[dict] = field(default_factory=list)  # finished: file, tokens


class ShardWriter:
    """Writes one split's token chunks into shards of exactly `shard_tokens` ids.

    `add(number, ids)` takes the chunks in order, starting at `start.chunk` (earlier
    ones are already on disk) and returns True when it finished a shard; `position`
    then says where a resumed run picks up. `limit` caps the split's total tokens.
    """

    def __init__(self, out: Path, split: str, dtype: np.dtype, shard_tokens: int,
                 start: Position | None = None, limit: int | None = None):
        self.out, self.split, self.dtype = out, split, dtype
        self.shard_tokens, self.limit = shard_tokens, limit
        self.position = start or Position()
        self.shards = list(self.position.shards)
        self.tokens = sum(s["tokens"] for s in self.shards)
        self._file = contextlib.ExitStack()  # the open temporary shard, if any
        self._count = 0  # ids in it

    @property
    def full(self) -> bool:
        return self.limit is not None and self.tokens >= self.limit

    def add(self, number: int, ids: np.ndarray) -> bool:
        """Append chunk `number`'s ids (those before `position` are skipped)."""
        if number < self.position.chunk or self.full:
            return False
        used = self.position.offset if number == self.position.chunk else 0
        finished = False
        while used < ids.size and not self.full:
            if not self._count:
                name = f"{self.split}_{len(self.shards):03d}.bin"
                self._handle = self._file.enter_context(
                    atomic_open(self.out / name, "wb"))
            room = self.shard_tokens - self._count
            if self.limit is not None:
                room = min(room, self.limit - self.tokens)
            piece = ids[used:used + room]
            self._handle.write(piece.astype(self.dtype).tobytes())
            self._count += piece.size
            self.tokens += piece.size
            used += piece.size
            if self._count == self.shard_tokens:
                self._close()
                finished = True
                self.position = Position(number, used, list(self.shards))
                if used == ids.size:
                    self.position = Position(number + 1, 0, list(self.shards))
        return finished

    def finish(self) -> list[dict]:
        """Close the last, shorter shard; return every shard: file, tokens."""
        if self._count:
            self._close()
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (its temporary file) after an error."""
        self._file.__exit__(RuntimeError, RuntimeError("aborted"), None)
        self._count = 0

    def _close(self) -> None:
        name = f"{self.split}_{len(self.shards):03d}.bin"
        self._file.close()  # flush, fsync, rename into place
        self.shards.append({"file": name, "tokens": self._count})
        self._count = 0


def load_progress(out: Path, fingerprint: str) -> dict[str, Position]:
    """Each split's position from `progress.json`, if it was written with the same
    fingerprint and its shards are all there; otherwise nothing (start over)."""
    try:
        saved = json.loads((out / PROGRESS).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if saved.get("fingerprint") != fingerprint:
        return {}
    positions = {split: Position(**value) for split, value in saved["splits"].items()}
    for position in positions.values():
        for shard in position.shards:
            path = out / shard["file"]
            if not path.is_file() or path.stat().st_size == 0:
                return {}
    return positions


def save_progress(out: Path, fingerprint: str, writers: dict[str, ShardWriter]) -> None:
    write_json(out / PROGRESS, {"fingerprint": fingerprint, "splits": {
        split: vars(w.position) for split, w in writers.items()}})


def remove_leftovers(out: Path, keep: set[str]) -> None:
    """Delete temporary files of a killed run, and shards not in `keep`."""
    for path in out.iterdir():
        stale_shard = SHARD_NAME.fullmatch(path.name) and path.name not in keep
        if stale_shard or TEMPORARY.fullmatch(path.name):
            path.unlink()
