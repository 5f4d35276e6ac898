"""Benchmark decontamination: N training tokens against 10k evaluation items.

    python benchmarks/decontamination.py          # 100M training tokens
    python benchmarks/decontamination.py --quick  # 5M

Writes synthetic uint16 shards (random ids over a 8192-token vocabulary) twice, once as
few large shards and once as many small ones, plants copies of some evaluation items in
them, and scans each layout in a fresh process with
`llm_reference.audit.decontamination` (one pass, memory-mapped). Prints the time and the
peak resident memory, after building the index and after the scan: the target is one
pass whose memory does not grow with the shard size. `peer` is the first thing one
writes: a Python set of the evaluation n-grams and one lookup per training window, timed
on a slice of the tokens; `ratio` compares throughputs (tokens per second). Timings on a
shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N = 13  # tokens per n-gram
VOCAB = 8192
ITEM_TOKENS = 100  # tokens per evaluation item
PLANTED = 25  # evaluation items copied into the training shards


def make_eval(items: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, VOCAB, (items, ITEM_TOKENS)).tolist()


def write_shards(folder: Path, tokens: int, shard_tokens: int, items: list[list[int]],
                 seed: int) -> list[Path]:
    """Random shards with `PLANTED` evaluation items copied in, spread out."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    stride = tokens // PLANTED
    paths, written = [], 0
    while written < tokens:
        count = min(shard_tokens, tokens - written)
        shard = rng.integers(0, VOCAB, count, dtype=np.uint16)
        for k in range(PLANTED):  # copies that land inside this shard
            at = k * stride + stride // 2 - written
            if 0 <= at <= count - ITEM_TOKENS:
                shard[at:at + ITEM_TOKENS] = items[k]
        paths.append(folder / f"train_{len(paths):03d}.bin")
        shard.tofile(paths[-1])
        written += count
    return paths


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec;
    getrusage's ru_maxrss would include the parent's peak at the fork."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scan(shards: list[str], items_file: str) -> dict:
    """One scan, run in its own process so that its peak memory is its own."""
    from llm_reference.audit.decontamination import NgramIndex, find_contamination

    items = json.loads(Path(items_file).read_text())
    start = time.perf_counter()
    index = NgramIndex(items, N)
    indexed = time.perf_counter()
    index_rss = peak_rss_mib()
    found = find_contamination(index, [Path(s) for s in shards], np.dtype("<u2"))
    end = time.perf_counter()
    return {"index_s": indexed - start, "scan_s": end - indexed,
            "contaminated": len(found), "index_rss_mb": index_rss,
            "peak_rss_mb": peak_rss_mib()}


def peer(shard: Path, items: list[list[int]], tokens: int) -> float:
    """Tokens per second of a Python set lookup per window, over `tokens` tokens."""
    grams = {tuple(t[i:i + N]) for t in items for i in range(len(t) - N + 1)}
    ids = np.fromfile(shard, "<u2", count=tokens).tolist()
    start = time.perf_counter()
    hits = sum(tuple(ids[i:i + N]) in grams for i in range(len(ids) - N + 1))
    seconds = time.perf_counter() - start
    assert hits >= 0
    return len(ids) / seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="5M training tokens")
    p.add_argument("--tokens", type=int, help="training tokens (default 100M)")
    p.add_argument("--items", type=int, default=10_000, help="evaluation items")
    p.add_argument("--scan", nargs=2, metavar=("SHARDS", "ITEMS"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.scan:  # the child process
        print(json.dumps(scan(json.loads(args.scan[0]), args.scan[1])))
        return 0
    tokens = args.tokens or (5_000_000 if args.quick else 100_000_000)
    items = make_eval(args.items, seed=1)
    print(f"{tokens:,} training tokens (uint16), {args.items:,} evaluation items of "
          f"{ITEM_TOKENS} tokens, {N}-grams, {PLANTED} items planted")
    with tempfile.TemporaryDirectory(prefix="decontam-bench-") as tmp:
        items_file = Path(tmp) / "items.json"
        items_file.write_text(json.dumps(items))
        speeds = []
        for label, shard_tokens in (("1 shard", tokens),
                                    ("shards of 1/10", -(-tokens // 10))):
            shards = write_shards(Path(tmp) / label.replace(" ", "_"), tokens,
                                  shard_tokens, items, seed=2)
            out = subprocess.run(
                [sys.executable, __file__, "--scan",
                 json.dumps([str(s) for s in shards]), str(items_file)],
                check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            assert r["contaminated"] == PLANTED, r  # every planted copy, nothing else
            speeds.append(tokens / r["scan_s"])
            print(f"{label:>15} ({len(shards)} x {shard_tokens * 2 / 2**20:,.0f} MiB): "
                  f"index {r['index_s']:.1f} s, scan {r['scan_s']:.1f} s "
                  f"({speeds[-1] / 1e6:.1f}M tokens/s), "
                  f"peak RSS {r['index_rss_mb']:,.0f} MiB after indexing, "
                  f"{r['peak_rss_mb']:,.0f} MiB after the scan, "
                  f"{r['contaminated']} contaminated")
            for shard in shards:
                shard.unlink()
            if len(speeds) == 1:
                peer_tokens = min(tokens, 1_000_000)
                first = write_shards(Path(tmp) / "peer", peer_tokens, peer_tokens,
                                     items, seed=2)[0]
                peer_speed = peer(first, items, peer_tokens)
    ours = min(speeds)
    print(f"ours {ours / 1e6:.2f}M tokens/s (slower layout) · peer (Python set, "
          f"{peer_tokens:,} tokens) {peer_speed / 1e6:.2f}M tokens/s · "
          f"ratio {ours / peer_speed:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
