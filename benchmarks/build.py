"""Benchmark the book builder: cold, warm and text-edit builds of a copy of the book.

    python benchmarks/build.py          # the real book (the cold build runs everything)
    python benchmarks/build.py --quick  # the small fixture book of the tests

Prints each build's wall and CPU seconds (the CPU time of the build and everything
it ran: on a shared machine the wall time is noisy, the CPU time much less), how
many experiments it executed and how many Typst pages it compiled (the others are
reused, bookbuilder/reuse.py), then `ours` (a warm build: nothing changed),
`peer` (a cold build: what a builder without caches pays on every run) and their
`ratio`. Targets (issue 17): warm <= 15 s, cold <= 15 min on 2 quiet cores, a
text-only edit re-executes no experiment.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "book"


def copy_book(src: Path, dst: Path) -> Path:
    """The book's sources only (not the builder package that lives in book/build)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("build", "__pycache__",
                                                            "__init__.py"))
    return dst


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(book: Path, out: Path, *extra: str) -> tuple[float, float, int, str]:
    """Wall and CPU seconds of `python build.py` in a fresh process (imports
    included, as for a user; CPU of its experiments' kernels too), how many
    experiments it executed (from the build manifest) and its line on Typst pages."""
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run([sys.executable, str(REPO / "build.py"), "--book-dir",
                           str(book), "--out", str(out), "--no-progress", *extra],
                          check=True, stdout=subprocess.PIPE, text=True)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    manifest = json.loads((out / "build-manifest.json").read_text())
    ran = sum(not e["cache_hit"] for e in manifest["experiments"].values())
    pages = next(line for line in done.stdout.splitlines()
                 if line.startswith("typst pages:"))
    return seconds, cpu, ran, pages.removeprefix("typst pages: ")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="benchmark the small fixture book instead of the real one")
    p.add_argument("--book-dir", type=Path, default=None,
                   help="book to benchmark (default: book/, or the fixture book "
                        "with --quick)")
    args = p.parse_args(argv)
    source = args.book_dir or (FIXTURE if args.quick else REPO / "book")
    with tempfile.TemporaryDirectory(prefix="book-bench-") as tmp:
        book, out = copy_book(source, Path(tmp) / "book"), Path(tmp) / "dist"
        runs = {"cold build": timed(book, out),
                "warm": timed(book, out),
                "warm, PDFs only": timed(book, out, "--no-html")}
        first_chapter = sorted((book / "chapters").glob("*.typ"))[0]
        first_chapter.write_text(first_chapter.read_text(encoding="utf-8")
                                 + "\nAn extra sentence, added by the benchmark.\n",
                                 encoding="utf-8")
        runs[f"text edit ({first_chapter.name})"] = timed(book, out)
        runs["warm after edit"] = timed(book, out)
    print(f"book  {source}   (load average now: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})")
    for name, (wall, cpu, ran, pages) in runs.items():
        print(f"{name:28s} {wall:7.1f} s wall {cpu:7.1f} s CPU  {ran:2d} experiments "
              f"executed; Typst pages: {pages}")
    warm, cold = runs["warm"][0], runs["cold build"][0]
    print(f"ours  {warm:.2f} s  (warm build, nothing changed: PDFs and web edition)")
    print(f"peer  {cold:.2f} s  (cold build, every experiment executed)")
    print(f"ratio {warm / cold:.3f}")
    return 0 if all(r[2] == 0 for name, r in runs.items() if name != "cold build") \
        else 1


if __name__ == "__main__":
    sys.exit(main())
