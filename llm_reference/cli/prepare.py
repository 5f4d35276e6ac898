"""`prepare`: collect, clean, scrub and tokenize a corpus into shards (`data.py`)."""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from .common import add_out

if TYPE_CHECKING:
    from ..data import PrepareSettings


def parse_scaled(value: str, units: dict[str, int], suffix: str = "") -> int:
    """A number with an optional unit letter of `units` (and `suffix`) -> an int."""
    letters = "".join(u for u in units if u)
    match = re.fullmatch(rf"(\d+(?:\.\d+)?)\s*([{letters}]?){suffix}",
                         value.strip().lower())
    if not match:
        raise ValueError(value)
    return int(float(match[1]) * units[match[2]])


def parse_bytes(value: str) -> int:
    """'200000', '200k', '12M' or '1G' (powers of 1000) -> a number of bytes."""
    try:
        return parse_scaled(value, {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}, "b?")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a size like 200k or 12M") from None


def parse_count(value: str) -> int:
    """'50000', '50k', '20M', '5B' or '1T' (B: billion) -> a number of tokens."""
    units = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
    try:
        return parse_scaled(value, units)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a count like 50M or 5B") from None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source", action="append", metavar="SRC",
        help="where text comes from (repeatable): a recipe (stdlib, the default: "
             "this Python's standard library, offline; tinyshakespeare, "
             "tinystories, fineweb-edu: see recipes.py), a file, "
             "a folder, a glob such as 'data/*.parquet', an http(s) URL, or a Hub "
             "dataset hf:ORG/NAME[:GLOB] (with --revision); "
             ".jsonl(.gz/.zst), .parquet and .arrow files hold one document per "
             "line or row (see --text-column)")
    parser.add_argument(
        "--revision", default=None, metavar="REV",
        help="the commit hash (or tag) of hf:ORG/NAME[:GLOB] sources: required, so "
             "that a run can be repeated; HF_TOKEN is used for gated datasets")
    parser.add_argument(
        "--text-column", default="text", metavar="NAME",
        help="the JSON field or table column that holds the text (default: text)")
    parser.add_argument(
        "--sha256", action="append", default=[], metavar="HEX",
        help="the expected sha256 of each URL source, in the order of the URLs; "
             "a download that does not match is refused")
    parser.add_argument(
        "--license", action="append", default=[], metavar="SPDX",
        help="license of the non-stdlib sources (e.g. CC-BY-4.0): once for all, or "
             "once per source in order; undeclared is 'unknown' and the manifest warns")
    parser.add_argument(
        "--stdlib-tests", action="store_true",
        help="also read the stdlib's test suites (about 19 MB more, full of fake "
             "emails and IPs that redaction replaces)")
    parser.add_argument(
        "--vocab-size", type=int, default=8192,
        help="tokenizer vocabulary size, including 256 byte tokens and the special "
             "tokens (default: 8192)")
    parser.add_argument(
        "--pattern", choices=("gpt2", "gpt4"), default="gpt4",
        help="the tokenizer's pre-tokenization regex (default: gpt4)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.05,
        help="share of documents held out for validation, chosen by a hash of each "
             "document (default: 0.05)")
    parser.add_argument(
        "--max-bytes", type=parse_bytes, default=None, metavar="SIZE",
        help="read at most SIZE bytes of text (e.g. 200k, 5M) for a quick run; "
             "default: everything")
    parser.add_argument(
        "--near-dup-threshold", type=float, default=0.85,
        help="drop a document whose 5-word shingles overlap an earlier one's by this "
             "Jaccard similarity or more, estimated by MinHash LSH (default: 0.85)")
    parser.add_argument(
        "--no-near-dup", action="store_true",
        help="keep near duplicates (exact duplicates are still dropped)")
    parser.add_argument(
        "--quality-filters", action=argparse.BooleanOptionalAction, default=None,
        help="drop web prose that fails the Gopher/C4/FineWeb heuristics (too "
             "short, few stop words, many symbols, repeated lines, boilerplate); "
             "default: on for prose recipes, off otherwise (code fails them)")
    parser.add_argument(
        "--document-separator", default=None, metavar="TEXT",
        help="cut plain text files into documents at TEXT (e.g. '<|endoftext|>'); "
             "default: one document per file")
    parser.add_argument(
        "--no-redact", action="store_true",
        help="keep emails, public IPs, phone numbers and secrets as they are instead "
             "of replacing them by placeholders such as [EMAIL]")
    parser.add_argument(
        "--shard-tokens", type=int, default=100_000_000,
        help="tokens per shard file, the last one fewer; a killed prepare resumes "
             "from its last complete shard (default: 100M)")
    parser.add_argument(
        "--tokens", type=parse_count, default=None, metavar="N",
        help="stop reading once the train split holds N tokens (e.g. 50M, 5B): "
             "a large source is read only as far as needed; default: everything")
    parser.add_argument(
        "--tokenizer-sample", type=parse_bytes, default=None, metavar="SIZE",
        help="train the tokenizer on the first SIZE of cleaned text (default: "
             "200M); a larger corpus is then read a second time")
    parser.add_argument(
        "--slice", default=None, metavar="I/N",
        help="prepare only slice I of N (by a hash of each document), e.g. in a "
             "Slurm array; join the N folders with `merge` (see README)")
    parser.add_argument(
        "--tokenizer", default=None, metavar="FILE",
        help="encode with this tokenizer.json instead of training one (every "
             "slice of a corpus needs the same)")
    parser.add_argument(
        "--encoder", choices=("python", "hf"), default="python",
        help="python: our tokenizer (the book's code, with a cache of encoded "
             "pieces); hf: the same tokenizer.json in Hugging Face tokenizers, same "
             "ids, every core of one process (benchmarks/data.py compares them)")
    parser.add_argument(
        "--workers", type=int, default=2,
        help="processes that clean and encode text in parallel, this one "
             "included; the output does not depend on it (default: 2)")
    parser.add_argument(
        "--seed", type=int, default=1337,
        help="seed of the train/val split (default: 1337)")
    parser.add_argument(
        "--cache-dir", type=Path, default=None,
        help="where downloads are kept (default: ~/.cache/llm_reference/downloads)")
    add_out(parser, "output folder for shards, tokenizer.json, manifest.json and "
                    "meta.json (default: data/stdlib)", default="data/stdlib")


def run(args: argparse.Namespace) -> int:
    from .. import compliance, slices
    from ..data import PrepareSettings, prepare

    sample = {} if args.tokenizer_sample is None else {
        "tokenizer_sample_bytes": args.tokenizer_sample}
    settings = PrepareSettings(
        sources=tuple(args.source or ["stdlib"]), licenses=tuple(args.license),
        sha256s=tuple(args.sha256), stdlib_tests=args.stdlib_tests,
        vocab_size=args.vocab_size, pattern=args.pattern,
        val_fraction=args.val_fraction, max_bytes=args.max_bytes,
        near_dup_threshold=None if args.no_near_dup else args.near_dup_threshold,
        redact=not args.no_redact, seed=args.seed, shard_tokens=args.shard_tokens,
        text_column=args.text_column, encoder=args.encoder, tokens=args.tokens,
        quality_filters=args.quality_filters, revision=args.revision,
        separator=args.document_separator, tokenizer_file=args.tokenizer,
        slice=slices.parse_slice(args.slice) if args.slice else None, **sample)
    out = Path(args.out)
    result = prepare(settings, out, workers=args.workers, cache_dir=args.cache_dir,
                     verbose=sys.stderr.isatty())
    for warning in [*compliance.license_warnings(result["records"]),
                    *input_warnings(result, settings)]:
        print(f"warning: {warning}", file=sys.stderr)
    print(format_summary(result, out))
    return 0


def input_warnings(result: dict, settings: PrepareSettings) -> list[str]:
    """What prepare did not take as asked: files that are not UTF-8 text (skipped,
    not decoded with U+FFFD, so binary files stay out of the corpus; manifest.json
    lists them) and a vocabulary the text could not fill."""
    warnings = []
    for r in result["records"]:
        if r.skipped_files:
            names = ", ".join(r.skipped_files[:3]) + (
                ", ..." if len(r.skipped_files) > 3 else "")
            warnings.append(f"source {r.id!r}: skipped {len(r.skipped_files)} "
                            f"file(s) that are not UTF-8 text ({names}); re-encode "
                            "them as UTF-8 to include them (manifest.json lists all)")
    vocab = result["meta"]["vocab_size"]
    if settings.tokenizer_file is None and vocab < settings.vocab_size:
        warnings.append(f"--vocab-size {settings.vocab_size}: the text holds only "
                        f"{vocab} distinct tokens, so the vocabulary is {vocab}")
    return warnings


def format_summary(result: dict, out: Path) -> str:
    """The table `prepare` prints: one row per source, then tokens and times."""
    header = ("source", "license", "docs", "MB", "empty", "exact", "near",
              "redacted", "kept")
    rows = [header]
    for r in result["records"]:
        rows.append((r.id, r.license, r.documents, f"{r.bytes / 1e6:.2f}", r.empty,
                     r.exact_duplicates, r.near_duplicates, sum(r.redacted.values()),
                     r.kept_documents))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) if i < 2 else str(v).rjust(w)
                       for i, (v, w) in enumerate(zip(row, widths))) for row in rows]
    redacted = sum((r.redacted for r in result["records"]), Counter())
    meta, seconds = result["meta"], result["seconds"]
    lines += [
        "redacted: " + (", ".join(f"{k} {v}" for k, v in sorted(redacted.items()))
                        or "nothing"),
        f"tokens: train {meta['train_tokens']:,} ({len(meta['shards']['train'])} "
        f"shard(s), {meta['documents']['train']} docs), val {meta['val_tokens']:,} "
        f"({len(meta['shards']['val'])} shard(s), {meta['documents']['val']} docs); "
        f"vocab {meta['vocab_size']}, {meta['dtype']}",
        f"time: {seconds['total']:.1f} s (read+clean {seconds['read_clean']:.1f}, "
        f"tokenizer {seconds['tokenizer']:.1f}, encode+write "
        f"{seconds['encode_write']:.1f})",
        f"wrote {out}/: meta.json, tokenizer.json, manifest.json, shards",
    ]
    return "\n".join(lines)
