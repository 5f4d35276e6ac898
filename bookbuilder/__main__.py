"""Build the book's PDFs: `python -m bookbuilder`, or `python build.py` at the root.

Runs the experiments (cached), renders the chapters and compiles the PDFs with Typst:
dist/llm-from-scratch.pdf (every track) and dist/llm-from-scratch-<track>.pdf, plus
dist/code/, dist/build-manifest.json and the web edition, dist/web/. A mistake in
the book's sources prints one line naming the file and line and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llm_reference.errors import UserError

from .browser import find_chromium
from .pipeline import REPO, Options, build


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python build.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--book-dir", type=Path, default=REPO / "book",
                   help="folder with roadmap.toml, chapters/ and experiments/ "
                        "(default: book)")
    p.add_argument("--out", type=Path, default=REPO / "dist",
                   help="output folder for the PDFs, code/, the manifest and the "
                        "experiment cache (default: dist)")
    p.add_argument("--src-root", type=Path, default=REPO,
                   help="folder that holds llm_reference/: quoted code is read and "
                        "experiments import from here (default: the repository)")
    p.add_argument("--templates", type=Path, default=REPO / "book" / "templates",
                   help="folder with the Typst templates (default: book/templates)")
    p.add_argument("--track", default=None,
                   help="build only this track's PDF (a [track.NAME] of the roadmap)")
    p.add_argument("--only", metavar="NODE", default=None,
                   help="preview one roadmap node: run only its experiment and write "
                        "OUT/preview-NODE.pdf")
    p.add_argument("--force", action="store_true",
                   help="re-run experiments and recompile every page even when "
                        "their cached results are current")
    p.add_argument("--no-exec", action="store_true",
                   help="never run experiments: use cached results, error if missing")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress display while experiments run")
    p.add_argument("--html", action=argparse.BooleanOptionalAction, default=None,
                   help="write the web edition, OUT/web/index.html (the roadmap) and "
                        "a page per chapter (default: yes, unless --track or --only)")
    p.add_argument("--screenshots", action="store_true",
                   help="also save PNGs of the web edition's roadmap and a chapter in "
                        "OUT/web/screenshots/ (needs Chromium)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.force and args.no_exec:
        print("error: --force and --no-exec contradict each other; pick one",
              file=sys.stderr)
        return 2
    if (args.html or args.screenshots) and (args.track or args.only):
        print("error: --html writes every track's pages; leave out --track and --only",
              file=sys.stderr)
        return 2
    if args.screenshots and find_chromium() is None:
        print("error: --screenshots needs Chromium on PATH: install it (Debian: "
              "apt-get install chromium) or leave --screenshots out", file=sys.stderr)
        return 2
    opts = Options(book_dir=args.book_dir, out=args.out, src_root=args.src_root,
                   templates=args.templates, track=args.track, only=args.only,
                   force=args.force, no_exec=args.no_exec,
                   progress=False if args.no_progress else None,
                   html=True if args.screenshots else args.html,
                   screenshots=args.screenshots)
    try:
        report = build(opts)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    ran = sum(not r.cache_hit for r in report.results.values())
    print(f"experiments: {len(report.results)} ({ran} run, "
          f"{len(report.results) - ran} cached)")
    print(f"typst pages: {len(report.pages)} ({len(report.compiled)} compiled, "
          f"{len(report.pages) - len(report.compiled)} reused)")
    for path in report.pdfs.values():
        print(f"wrote {path}")
    if report.web_pages:
        print(f"wrote {report.web_pages[0]} and {len(report.web_pages) - 1} chapter "
              "pages")
    for path in report.screenshots:
        print(f"wrote {path}")
    print(f"built in {report.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
