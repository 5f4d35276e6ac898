"""Data pipeline: near-duplicate detection and batch sampling against simple peers.

1. Near duplicates, on this Python's stdlib documents: our MinHash LSH
   (`NearDuplicates`, threshold 0.85) against the exact answer, the Jaccard index of
   5-word shingle sets computed for every pair (the peer). Both keep the first copy,
   so each flags the documents that nearly repeat an earlier kept one; we print the
   time of each and how far the flagged sets agree.
2. Batches, on a prepared sample of the stdlib: `Batches.get` against nanoGPT's
   `get_batch` (a fresh memmap per call, one slice per row for x and again for y).

    python benchmarks/data.py            # 500 documents, 300 batches (~1 min)
    python benchmarks/data.py --quick    # 200 documents, 100 batches

Timings are single runs on a shared machine: noisy.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="200 documents and 100 batches instead of 500 and 300")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_near_duplicates(200 if args.quick else 500)
    bench_batches(100 if args.quick else 300)


if __name__ == "__main__":
    main()
