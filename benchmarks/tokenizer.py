"""Benchmark our byte-level BPE against Hugging Face `tokenizers` and a naive BPE.

    python benchmarks/tokenizer.py            # stdlib corpus (~13 MB), vocab 8192
    python benchmarks/tokenizer.py --quick    # 1 MB of it, vocab 1024: seconds
    python benchmarks/tokenizer.py --full     # also runs the naive BPE to vocab 8192

Everything is measured in this one run, on the same text:
- training time against `tokenizers`' BpeTrainer (same vocabulary size, same regex
  split, same byte-level alphabet); it uses all cores, we use one;
- training time on 1 MB against `naive_merges`, which recounts every pair after each
  merge (both start from the same pre-token counts; below --full the naive BPE stops
  after `--naive-merges` merges, and ours is trained to the same vocabulary);
- encode throughput against `tokenizers` loaded from our saved `tokenizer.json`, one
  document per call on both sides (the ids must agree, and are checked).
Timings on a shared machine are noisy; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_reference.tokenizer import (  # noqa: E402
    DEFAULT_SPECIAL_TOKENS,
    PATTERNS,
    Tokenizer,
    count_words,
)

SKIP_DIRS = {"site-packages", "test", "tests", "idle_test"}


def stdlib_corpus(max_bytes: int | None = None) -> list[str]:
    """The standard library's .py sources (no tests) + `pydoc_data.topics` prose.

    With `max_bytes`, a deterministic sample: every 7th document (cycling) until the
    UTF-8 size reaches `max_bytes`, the last document cut to fit.
    """
    import pydoc_data.topics

    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py")
                   if not SKIP_DIRS & set(p.relative_to(root).parts))
    docs = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    topics = pydoc_data.topics.topics
    docs += [topics[key] for key in sorted(topics)]
    if max_bytes is None:
        return docs
    sample, size = [], 0
    for n in range(len(docs)):
        doc = docs[n * 7 % len(docs)]
        doc = doc[: max_bytes - size]  # characters >= bytes, so this only shortens
        sample.append(doc)
        size += len(doc.encode("utf-8"))
        if size >= max_bytes:
            break
    return sample


def naive_merges(word_counts: dict[bytes, int], num_tokens: int) -> list[tuple]:
    """The textbook BPE loop: recount every pair of every word after each merge.

    Same tie-break as `Tokenizer.train` (highest count, then smallest pair of byte
    strings); returns the merges as pairs of byte strings.
    """
    words = [[bytes([b]) for b in word] for word in word_counts]
    freqs = list(word_counts.values())
    merges = []
    for _ in range(num_tokens):
        counts: Counter = Counter()
        for word, freq in zip(words, freqs):
            for pair in zip(word, word[1:]):
                counts[pair] += freq
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        words = [_merge_bytes(word, best) for word in words]
    return merges


def _merge_bytes(word: list[bytes], pair: tuple[bytes, bytes]) -> list[bytes]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def hf_train(texts: list[str], vocab_size: int, pattern: str):
    """`tokenizers`' BPE trained the way ours is: regex split, then bytes."""
    from tokenizers import Regex, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERNS[pattern]), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(DEFAULT_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator(texts, trainer)
    return hf


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def row(what: str, ours: float, peer: float, unit: str, ratio: str, target: str):
    print(f"{what:<44} ours {ours:9.2f} {unit:<5} peer {peer:9.2f} {unit:<5} "
          f"ratio {ratio:<10} target {target}")


def bench_hf(texts: list[str], vocab_size: int, pattern: str) -> None:
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"corpus: {len(texts)} documents, {mb:.1f} MB; vocab {vocab_size}, {pattern}")
    ours, t_ours = timed(Tokenizer.train, texts, vocab_size, pattern)
    _, t_hf = timed(hf_train, texts, vocab_size, pattern)
    row("train vs tokenizers (s)", t_ours, t_hf, "s", f"{t_ours / t_hf:.1f}x", "<= 15x")

    from tokenizers import Tokenizer as HFTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        ours.save(Path(tmp) / "tokenizer.json")
        hf = HFTokenizer.from_file(str(Path(tmp) / "tokenizer.json"))
    ids_ours, e_ours = timed(lambda: [ours.encode(t) for t in texts])
    ids_hf, e_hf = timed(lambda: [hf.encode(t).ids for t in texts])
    row("encode vs tokenizers (MB/s)", mb / e_ours, mb / e_hf, "MB/s",
        f"{e_ours / e_hf:.1f}x", "<= 10x")
    differ = sum(a != b for a, b in zip(ids_ours, ids_hf))
    print(f"documents whose ids differ from tokenizers: {differ} of {len(texts)}")


def bench_naive(texts: list[str], num_merges: int | None, pattern: str) -> None:
    specials = len(DEFAULT_SPECIAL_TOKENS)
    vocab_size = 8192 if num_merges is None else 256 + num_merges + specials
    num_tokens = vocab_size - 256 - specials
    ours, t_ours = timed(Tokenizer.train, texts, vocab_size, pattern)
    start = time.perf_counter()
    merges = naive_merges(count_words(texts, pattern), num_tokens)
    t_naive = time.perf_counter() - start
    what = f"train vs naive, 1 MB, {len(merges)} merges (s)"
    row(what, t_ours, t_naive, "s", f"{t_naive / t_ours:.0f}x faster", ">= 50x")
    same = merges == [(ours.vocab[a], ours.vocab[b]) for a, b in ours.merges]
    print(f"same merges as the naive BPE: {same}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="1 MB corpus, vocab 1024, naive BPE capped at 100 merges")
    size.add_argument("--full", action="store_true",
                      help="run the naive BPE all the way to vocab 8192 (minutes)")
    parser.add_argument("--naive-merges", type=int, default=1000,
                        help="merges the naive BPE makes unless --full (default 1000)")
    parser.add_argument("--pattern", choices=sorted(PATTERNS), default="gpt4",
                        help="pre-tokenizer regex (default gpt4)")
    args = parser.parse_args(argv)
    one_mb = stdlib_corpus(max_bytes=1_000_000)
    if args.quick:
        bench_hf(one_mb, 1024, args.pattern)
        bench_naive(one_mb, 100, args.pattern)
    else:
        bench_hf(stdlib_corpus(), 8192, args.pattern)
        bench_naive(one_mb, None if args.full else args.naive_merges, args.pattern)
    return 0


if __name__ == "__main__":
    sys.exit(main())
