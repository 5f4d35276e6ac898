"""Benchmark the book builder: cold, warm and text-edit builds of a copy of the book.

    python benchmarks/build.py          # the real book (the cold build runs everything)
    python benchmarks/build.py --quick  # the small fixture book of the tests

Prints the three timings, then `ours` (a warm build: every experiment cached),
`peer` (a cold build: what a builder without a cache pays on every run) and their
`ratio`. Targets: warm <= 15 s, the web edition (dist/web) adds <= 30 s to it, a
text-only edit re-executes nothing, the finished book's cold build <= 20 min on 2
cores. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
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


def timed(book: Path, out: Path, *extra: str) -> tuple[float, int]:
    """Wall time of `python build.py` in a fresh process (imports included, as for a
    user), and how many experiments it executed (from the build manifest)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "build.py"), "--book-dir", str(book),
                    "--out", str(out), "--no-progress", *extra], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    manifest = json.loads((out / "build-manifest.json").read_text())
    ran = sum(not e["cache_hit"] for e in manifest["experiments"].values())
    return seconds, ran


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
        cold, cold_ran = timed(book, out)
        warm, warm_ran = timed(book, out, "--no-html")
        warm_web, web_ran = timed(book, out)
        first_chapter = sorted((book / "chapters").glob("*.typ"))[0]
        first_chapter.write_text(first_chapter.read_text(encoding="utf-8")
                                   + "\nAn extra sentence, added by the benchmark.\n",
                                   encoding="utf-8")
        edit, edit_ran = timed(book, out)
    print(f"book            {source}")
    print(f"cold build      {cold:8.1f} s  ({cold_ran} experiments executed)")
    print(f"warm, PDFs only {warm:8.1f} s  ({warm_ran} experiments executed)")
    print(f"warm, with web  {warm_web:8.1f} s  (the web edition adds "
          f"{warm_web - warm:.1f} s; target <= 30 s)")
    print(f"text edit       {edit:8.1f} s  ({edit_ran} experiments executed, "
          f"edited {first_chapter.name})")
    print(f"ours  {warm_web:.2f} s  (warm build, cached: PDFs and web edition)")
    print(f"peer  {cold:.2f} s  (cold build, every experiment executed)")
    print(f"ratio {warm_web / cold:.3f}")
    return 0 if warm_ran == 0 and edit_ran == 0 and web_ran == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
