"""Data pipeline: near-duplicate detection and batch sampling against simple peers.

1. Near duplicates, on this Python's stdlib documents: our MinHash LSH
   (`NearDuplicates`, threshold 0.85) against the exact answer, the Jaccard index of
   5-word shingle sets computed for every pair (the peer). Both keep the first copy,
   so each flags the documents that nearly repeat an earlier kept one; we print the
   time of each and how far the flagged sets agree.
2. Batches, on a prepared sample of the stdlib: `Batches.get` against nanoGPT's
   `get_batch` (a fresh memmap per call, one slice per row for x and again for y).
3. `prepare` end to end, on stdlib text (its test suites included: 30 MB of distinct
   files) written as .jsonl.gz, with a tokenizer trained beforehand: tokens/s with 1
   and 2 workers, measured in the same run (target: 2 workers >= 1.8x one with the
   Python encoder; the hf encoder is reported too). Then the encode stage with
   `--encoder hf` against `tokenizers`' own `encode_batch` and `encode_batch_fast`
   on the same texts (target >= 0.8x), and the peak RSS of `prepare --encoder hf`
   on that corpus and on one 4x larger: streaming keeps it flat.

    python benchmarks/data.py                 # 500 documents, 300 batches, 30 MB
    python benchmarks/data.py --quick         # 200 documents, 100 batches, 8 MB
    python benchmarks/data.py --prepare-only  # only part 3

Timings are best-of-a-few runs: on a shared machine they are noisy, and two workers
cannot beat one unless two cores are free (the load average is printed with them).
Each run pays fixed costs (starting a worker process, warming its encode cache), so
the ratio grows with the corpus: compare `--quick` with the default.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from llm_reference.cleaning import NearDuplicates, normalize, word_shingles
from llm_reference.data import Batches, PrepareSettings, prepare
from llm_reference.sources import open_sources


def exact_near_duplicates(texts: list[str], threshold: float) -> set[int]:
    """The peer: exact Jaccard against every earlier kept document."""
    kept: list[set[bytes]] = []
    flagged = set()
    for i, text in enumerate(texts):
        shingles = word_shingles(text)
        if shingles and any(len(shingles & k) / len(shingles | k) >= threshold
                            for k in kept):
            flagged.add(i)
        elif shingles:
            kept.append(shingles)
    return flagged


def bench_near_duplicates(n_docs: int) -> None:
    (source,) = open_sources(["stdlib"])
    texts = [normalize(d.text) for d in source.documents()][:n_docs]
    start = time.perf_counter()
    near = NearDuplicates(threshold=0.85)
    ours = {i for i, text in enumerate(texts) if near.is_duplicate(text)}
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    peer = exact_near_duplicates(texts, 0.85)
    t_peer = time.perf_counter() - start
    print(f"near duplicates in {len(texts)} stdlib documents (threshold 0.85)")
    print(f"  ours (MinHash LSH): {t_ours:7.2f} s, {len(ours)} flagged")
    print(f"  peer (exact pairs): {t_peer:7.2f} s, {len(peer)} flagged")
    print(f"  ratio (peer time / ours): {t_peer / t_ours:.1f}x; both flag "
          f"{len(ours & peer)}, only ours {len(ours - peer)}, only peer "
          f"{len(peer - ours)}")


def nanogpt_get_batch(path: Path, batch_size: int, block_size: int):
    """nanoGPT's train.py get_batch (CPU branch), for comparison."""
    data = np.memmap(path, dtype=np.uint16, mode="r")
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64))
                     for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block_size].astype(np.int64))
                     for i in ix])
    return x, y


def bench_batches(n_batches: int, batch_size: int = 32, context: int = 256) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        prepare(PrepareSettings(max_bytes=2_000_000, vocab_size=1024), out, workers=1)
        batches = Batches(out, "train", batch_size, context, seed=0)
        start = time.perf_counter()
        for i in range(n_batches):
            batches.get(i)
        t_ours = time.perf_counter() - start
        torch.manual_seed(0)
        start = time.perf_counter()
        for _ in range(n_batches):
            nanogpt_get_batch(out / "train_000.bin", batch_size, context)
        t_peer = time.perf_counter() - start
    tokens = n_batches * batch_size * context
    print(f"batches of {batch_size} x {context} tokens, {n_batches} of them")
    print(f"  ours (Batches.get):  {tokens / t_ours / 1e6:7.1f} M tokens/s")
    print(f"  peer (nanoGPT):      {tokens / t_peer / 1e6:7.1f} M tokens/s")
    print(f"  ratio (ours / peer): {t_peer / t_ours:.2f}")


def write_corpus(path: Path, megabytes: float) -> list[str]:
    """Stdlib documents (tests included), each opened by a counter line, until
    `megabytes`, as .jsonl.gz; past 30 MB they repeat."""
    (source,) = open_sources(["stdlib"], include_tests=True)
    base = [normalize(d.text) for d in source.documents()]
    texts, size = [], 0
    while size < megabytes * 1e6:
        text = f"# copy {len(texts)}\n" + base[len(texts) % len(base)]
        texts.append(text)
        size += len(text)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text}) + "\n")
    return texts


def timed_prepare(corpus: Path, tokenizer: Path, out: Path, encoder: str,
                  workers: int) -> float:
    """Train tokens/s of the encode+write stage of `prepare` (in this process)."""
    settings = PrepareSettings(sources=(str(corpus),), licenses=("PSF-2.0",),
                               near_dup_threshold=None, redact=False,
                               val_fraction=0.0, tokenizer_file=str(tokenizer),
                               encoder=encoder)
    result = prepare(settings, out, workers=workers)
    return result["meta"]["train_tokens"] / result["seconds"]["encode_write"]


# `prepare` in a fresh process, whose workers (spawned) import only llm_reference;
# it prints its tokens, seconds, and the CPU seconds of itself and of its workers
END_TO_END = ("import json, resource, sys; from pathlib import Path; "
              "from llm_reference.data import PrepareSettings, prepare; "
              "corpus, tokenizer, out, encoder, workers = sys.argv[1:]; "
              "r = prepare(PrepareSettings(sources=(corpus,), licenses=('PSF-2.0',), "
              "val_fraction=0.0, tokenizer_file=tokenizer, encoder=encoder), "
              "Path(out), workers=int(workers)); "
              "cpu = [sum(resource.getrusage(who)[:2]) for who in "
              "(resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]; "
              "print(json.dumps([r['meta']['train_tokens'], r['seconds']['total'], "
              "*cpu]))")


def end_to_end(corpus: Path, tokenizer: Path, out: Path, encoder: str,
               workers: int) -> tuple[float, float, float]:
    """Tokens/s of a whole `prepare` run (read, normalize, deduplicate, redact,
    encode, write; the tokenizer given), and the CPU seconds of its main process
    and of its workers."""
    done = subprocess.run([sys.executable, "-c", END_TO_END, str(corpus),
                           str(tokenizer), str(out), encoder, str(workers)],
                          check=True, capture_output=True, text=True)
    tokens, seconds, main_cpu, workers_cpu = json.loads(done.stdout.splitlines()[-1])
    return tokens / seconds, main_cpu, workers_cpu


def bench_workers(corpus: Path, tokenizer: Path, tmp: Path, megabytes: float,
                  repeats: int) -> None:
    """`prepare` end to end with 1 and 2 workers, in the same run, best of
    `repeats` (alternating, so that a burst of load hits both alike).

    One worker means one process doing everything, with no pool; two workers
    means the main process, which reads, decides duplicates in order, writes the
    shards and cleans and encodes batches while it would otherwise wait, plus one
    spawned process that only cleans and encodes. So the ratio includes every cost
    of going parallel: starting the worker, warming a second encode cache, and
    shipping documents and ids between processes. CPU seconds are the main
    process's and the pool's.
    """
    print(f"prepare end to end, {megabytes:.0f} MB .jsonl.gz (normalize, exact and "
          "near dedup, PII, encode, write; tokenizer given), best of "
          f"{repeats}")
    for encoder in ("python", "hf"):
        best: dict[int, tuple[float, float, float]] = {}
        for _ in range(repeats):
            for workers in (1, 2):
                run = end_to_end(corpus, tokenizer, tmp / f"w{workers}", encoder,
                                 workers)
                if run[0] > best.get(workers, (0, 0, 0))[0]:
                    best[workers] = run
        for workers, (rate, main_cpu, workers_cpu) in best.items():
            print(f"  {encoder} encoder, {workers} worker{'s' * (workers > 1)}: "
                  f"{rate / 1e6:6.3f} M tokens/s (CPU s: main {main_cpu:.1f}, "
                  f"pool {workers_cpu:.1f})")
        target = ", target 1.8x" if encoder == "python" else ""
        print(f"  {encoder} encoder, ratio 2 / 1 workers: "
              f"{best[2][0] / best[1][0]:.2f}x{target} (load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


# VmHWM, not ru_maxrss: a child's ru_maxrss keeps the high-water mark of the
# benchmark's own memory, which the child shared between fork and exec (Linux)
PEAK_RSS = ("import re, sys; from llm_reference.__main__ import main; "
            "main(sys.argv[1:]); status = open('/proc/self/status').read(); "
            "print(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))")


def peak_rss_mb(corpus: Path, tokenizer: Path, out: Path) -> float:
    """Peak resident memory of a `prepare --encoder hf` process, in MB (one worker:
    the encoding runs in that process). Linux only (/proc)."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "prepare", "--source", str(corpus),
         "--license", "PSF-2.0", "--no-near-dup", "--no-redact", "--tokenizer",
         str(tokenizer), "--encoder", "hf", "--workers", "1", "--tokenizer-sample",
         "1M", "--out", str(out)], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024


def bench_prepare(megabytes: float, repeats: int) -> None:
    from tokenizers import Tokenizer as HFTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = write_corpus(tmp / "corpus.jsonl.gz", megabytes)
        prepare(PrepareSettings(max_bytes=2_000_000, vocab_size=4096), tmp / "tok",
                workers=1)
        tokenizer = tmp / "tok" / "tokenizer.json"
        bench_workers(tmp / "corpus.jsonl.gz", tokenizer, tmp, megabytes, repeats)
        ours = timed_prepare(tmp / "corpus.jsonl.gz", tokenizer, tmp / "hf", "hf", 1)
        peer = HFTokenizer.from_file(str(tokenizer))
        peer.encode_special_tokens = True
        print(f"prepare, encode + write stage of {megabytes:.0f} MB (vocab 4096)")
        print(f"  ours (--encoder hf):       {ours / 1e6:6.2f} M tokens/s")
        for name in ("encode_batch", "encode_batch_fast"):
            start = time.perf_counter()
            encoded = getattr(peer, name)(texts, add_special_tokens=False)
            rate = sum(len(e.ids) + 1 for e in encoded) / (time.perf_counter() - start)
            del encoded
            print(f"  peer ({name}):{' ' * (18 - len(name))}{rate / 1e6:6.2f} M "
                  f"tokens/s (ratio ours / peer {ours / rate:.2f}, target 0.8)")
        small = peak_rss_mb(tmp / "corpus.jsonl.gz", tokenizer, tmp / "rss1")
        write_corpus(tmp / "big.jsonl.gz", 4 * megabytes)
        big = peak_rss_mb(tmp / "big.jsonl.gz", tokenizer, tmp / "rss4")
        print(f"  peak RSS, {megabytes:.0f} MB corpus: {small:.0f} MB; "
              f"{4 * megabytes:.0f} MB corpus: {big:.0f} MB (flat: streaming)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="200 documents and 100 batches instead of 500 and 300")
    parser.add_argument("--prepare-only", action="store_true",
                        help="only the prepare benchmarks")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each worker count; the best counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.prepare_only:
        bench_near_duplicates(200 if args.quick else 500)
        bench_batches(100 if args.quick else 300)
    bench_prepare(8 if args.quick else 30, args.repeats)


if __name__ == "__main__":
    main()
