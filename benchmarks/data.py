"""Data pipeline: near-duplicate detection and batch sampling against simple peers.

1. Near duplicates, on this Python's stdlib documents: our MinHash LSH
   (`NearDuplicates`, threshold 0.85) against the exact answer, the Jaccard index of
   5-word shingle sets computed for every pair (the peer). Both keep the first copy,
   so each flags the documents that nearly repeat an earlier kept one; we print the
   time of each and how far the flagged sets agree.
2. Batches, on a prepared sample of the stdlib: `Batches.get` against nanoGPT's
   `get_batch` (a fresh memmap per call, one slice per row for x and again for y).
3. Encoding in `prepare`, on stdlib text written as .jsonl.gz with a tokenizer trained
   beforehand: tokens/s of the Python encoder with 1 and 2 workers (target: 2 workers
   >= 1.8x one), and of `--encoder hf` against `tokenizers`' own `encode_batch` on the
   same texts (target >= 0.8x). Then the peak RSS of `prepare --encoder hf` on a corpus
   and on one 4x larger: streaming keeps it flat.

    python benchmarks/data.py            # 500 documents, 300 batches, 8 MB (minutes)
    python benchmarks/data.py --quick    # 200 documents, 100 batches, 2 MB

Timings are single runs on a shared machine: noisy.
"""

from __future__ import annotations

import argparse
import gzip
import json
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
    """Stdlib documents, repeated with a counter until `megabytes`, as .jsonl.gz."""
    (source,) = open_sources(["stdlib"])
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
    """Train tokens/s of the encode+write stage of `prepare`."""
    settings = PrepareSettings(sources=(str(corpus),), licenses=("PSF-2.0",),
                               near_dup_threshold=None, redact=False,
                               val_fraction=0.0, tokenizer_file=str(tokenizer),
                               encoder=encoder)
    result = prepare(settings, out, workers=workers)
    return result["meta"]["train_tokens"] / result["seconds"]["encode_write"]


PEAK_RSS = ("import resource, sys; from llm_reference.__main__ import main; "
            "main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def peak_rss_mb(corpus: Path, tokenizer: Path, out: Path) -> float:
    """Peak resident memory of a `prepare --encoder hf` process, in MB (one worker:
    the encoding runs in that process)."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "prepare", "--source", str(corpus),
         "--license", "PSF-2.0", "--no-near-dup", "--no-redact", "--tokenizer",
         str(tokenizer), "--encoder", "hf", "--workers", "1", "--tokenizer-sample",
         "1M", "--out", str(out)], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024


def bench_prepare(megabytes: float) -> None:
    from tokenizers import Tokenizer as HFTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = write_corpus(tmp / "corpus.jsonl.gz", megabytes)
        prepare(PrepareSettings(max_bytes=2_000_000, vocab_size=4096), tmp / "tok",
                workers=1)
        tokenizer = tmp / "tok" / "tokenizer.json"
        one = timed_prepare(tmp / "corpus.jsonl.gz", tokenizer, tmp / "p1", "python", 1)
        two = timed_prepare(tmp / "corpus.jsonl.gz", tokenizer, tmp / "p2", "python", 2)
        ours = timed_prepare(tmp / "corpus.jsonl.gz", tokenizer, tmp / "hf", "hf", 1)
        peer = HFTokenizer.from_file(str(tokenizer))
        peer.encode_special_tokens = True
        start = time.perf_counter()
        count = sum(len(e.ids) + 1 for e in peer.encode_batch(texts,
                                                              add_special_tokens=False))
        peer_rate = count / (time.perf_counter() - start)
        print(f"prepare, encode + write of {megabytes:.0f} MB (vocab 4096)")
        print(f"  python encoder, 1 worker:  {one / 1e6:6.2f} M tokens/s")
        print(f"  python encoder, 2 workers: {two / 1e6:6.2f} M tokens/s "
              f"(ratio {two / one:.2f}x, target 1.8x)")
        print(f"  ours (--encoder hf):       {ours / 1e6:6.2f} M tokens/s")
        print(f"  peer (encode_batch):       {peer_rate / 1e6:6.2f} M tokens/s "
              f"(ratio ours / peer {ours / peer_rate:.2f}, target 0.8)")
        small = peak_rss_mb(tmp / "corpus.jsonl.gz", tokenizer, tmp / "rss1")
        write_corpus(tmp / "big.jsonl.gz", 4 * megabytes)
        big = peak_rss_mb(tmp / "big.jsonl.gz", tokenizer, tmp / "rss4")
        print(f"  peak RSS, {megabytes:.0f} MB corpus: {small:.0f} MB; "
              f"{4 * megabytes:.0f} MB corpus: {big:.0f} MB (flat: streaming)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="200 documents and 100 batches instead of 500 and 300")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_near_duplicates(200 if args.quick else 500)
    bench_batches(100 if args.quick else 300)
    bench_prepare(2 if args.quick else 8)


if __name__ == "__main__":
    main()
