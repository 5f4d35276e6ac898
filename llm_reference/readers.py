"""File formats of text corpora, each read as a stream of (text, row number) pairs.

Web-scale corpora ship as many files of many documents each: JSON Lines, often
compressed (`.jsonl.gz`, `.jsonl.zst`), or columnar tables (`.parquet`, `.arrow`) with
one document per row in a text column. Every reader here yields one document at a
time, so a file larger than memory streams through; only one row group or record
batch (a few thousand rows) is held at once.

A file that is damaged (a truncated download, a bad archive) or lacks the text
column stops the run with one line that names the file: a silently shortened corpus
is worse than none.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

import zstandard

from .errors import UserError

# how a file's name ends -> the reader for it (longest suffix wins)
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")
TABLE_SUFFIXES = (".parquet", ".arrow")
ROWS_PER_BATCH = 1024  # rows of a table held in memory at once


def is_multi_document(path: Path) -> bool:
    """True for a file that holds many documents (JSON Lines or a table)."""
    return path.name.endswith(JSONL_SUFFIXES + TABLE_SUFFIXES)


def read_documents(path: Path, text_column: str = "text") -> Iterator[tuple[str, int]]:
    """Yield (text, "name:row") for every document of a multi-document file."""
    name = path.name
    try:
        if name.endswith(JSONL_SUFFIXES):
            yield from _jsonl(path, text_column)
        elif name.endswith(".parquet"):
            yield from _parquet(path, text_column)
        elif name.endswith(".arrow"):
            yield from _arrow(path, text_column)
        else:
            raise UserError(f"{path}: not a .jsonl, .jsonl.gz, .jsonl.zst, .parquet "
                            "or .arrow file")
    except (OSError, EOFError, ValueError, zstandard.ZstdError) as e:  # arrow: both
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} is corrupt or truncated ({reason}); download it "
                        "again or remove it from --source") from None


def _lines(path: Path) -> Iterator[bytes]:
    """The decompressed lines of a JSON Lines file, read lazily.

    Bytes, not text: only b"\n" ends a line (a U+2028 inside a string does not),
    and a line that is not UTF-8 is reported with its number."""
    if path.name.endswith(".zst"):
        yield from _split_lines(_zstd_blocks(path))
        return
    with (gzip.open(path, "rb") if path.name.endswith(".gz") else
          open(path, "rb")) as f:  # gzip raises EOFError if the file is cut short
        yield from f


def _zstd_blocks(path: Path) -> Iterator[bytes]:
    """Decompress a .zst file block by block, frame after frame; a file that ends
    inside a frame is an error (the zstd reader would just stop)."""
    decompressor = zstandard.ZstdDecompressor()
    frame = decompressor.decompressobj()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            while block:
                if frame.eof:
                    frame = decompressor.decompressobj()
                yield frame.decompress(block)
                block = frame.unused_data if frame.eof else b""
    if not frame.eof:
        raise EOFError("the last zstd frame is incomplete")


def _split_lines(blocks: Iterator[bytes]) -> Iterator[bytes]:
    rest = b""
    for block in blocks:
        *lines, rest = (rest + block).split(b"\n")
        yield from lines
    if rest:
        yield rest


def _jsonl(path: Path, column: str) -> Iterator[tuple[str, int]]:
    """One JSON object per line; its `column` field is the document."""
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)[column]
        except (ValueError, KeyError, TypeError):  # not JSON, not UTF-8
            text = None
        if not isinstance(text, str):
            raise UserError(f"{path.name}:{number}: expected a JSON object with "
                            f'a "{column}" string on every line (--text-column '
                            "names the field)")
        yield text, number


def _parquet(path: Path, column: str) -> Iterator[tuple[str, int]]:
    """Rows of a Parquet file, one record batch of the text column at a time."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path)
    _check_column(path, table.schema_arrow.names, column)
    row = 0
    for batch in table.iter_batches(batch_size=ROWS_PER_BATCH, columns=[column]):
        for text in batch.column(0).to_pylist():
            row += 1
            if text is not None:
                yield text, row


def _arrow(path: Path, column: str) -> Iterator[tuple[str, int]]:
    """Rows of an Arrow IPC file or stream (what `datasets` saves), memory-mapped."""
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:  # not the file format: try the stream format
            source.seek(0)
            reader = pa.ipc.open_stream(source)
            batches = iter(reader)
        _check_column(path, reader.schema.names, column)
        row = 0
        for batch in batches:
            for text in batch.column(column).to_pylist():
                row += 1
                if text is not None:
                    yield text, row


def separated_documents(path: Path, separator: str) -> Iterator[tuple[str, int]]:
    """Yield (text, number) for each piece of a UTF-8 text file between
    `separator`s (TinyStories puts "<|endoftext|>" between stories), reading it a
    block at a time, so a file of gigabytes never sits in memory whole."""
    number, rest = 0, ""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            while block := f.read(1 << 20):
                *pieces, rest = (rest + block).split(separator)
                for piece in pieces:
                    number += 1
                    yield piece, number
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; a --document-separator source "
                        "must be") from None
    yield rest, number + 1


def _check_column(path: Path, names: list[str], column: str) -> None:
    if column not in names:
        raise UserError(f"{path} has no column {column!r} (it has "
                        f"{', '.join(names)}); pick one with --text-column")
