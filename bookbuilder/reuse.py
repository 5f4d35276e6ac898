"""Compile only the pages whose inputs changed; reuse the others' last output.

A warm build (nothing edited) still renders every page, which is cheap (Jinja), but
compiling a page with Typst is not: seconds per edition. So each compile is keyed
by a hash of everything it can read or that can change its bytes:

  - the page: its rendered Typst source (an edition's main.typ, a web chapter) and
    its line map, which places the warnings it prints;
  - the Typst root: every other file under it (style.typ, tracks.typ,
    references.yml, the experiments' figures, the attached code, the source
    archive), except the other generated pages, since no page imports another;
  - the compiler: the typst package's version, the code of pdf.py (how it is
    called) and the folder the build runs from (warnings name files relative to it).

CACHE/NAME.json records the key that CACHE/NAME.pdf (or .html) was compiled from,
the output's sha256 and the warnings the compile printed. When the key matches and
the output is intact, it is reused and its warnings are printed again, so a warm
build says what a cold one said. Any change to an input changes the key and that
page is compiled again; one slot per page name, so the cache does not grow.

The pages that do need compiling run in threads: the typst package releases
Python's GIL while it compiles, so on a machine with free cores the editions compile
at once. Each compile reads only its inputs, so the bytes do not depend on the order.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import typst

from llm_reference.atomic import write_bytes, write_json

from . import pdf

WEB_SHARED = "web/style.typ"  # under web/ but a copied template, not a page


@dataclass
class Page:
    name: str             # its cache slot: "all", a track, "only-NODE", "web/NODE"
    main: Path            # the rendered Typst file, under the root
    linemap: pdf.LineMap  # generated line -> (source file, line)
    format: str = "pdf"   # or "html"


def is_page(rel: str) -> bool:
    """A generated page, by its path under the root: EDITION/main.typ or
    web/NODE.typ. Pages of earlier builds (a removed chapter, a --only preview)
    count too, so that writing them changes no other page's key."""
    parts = rel.split("/")
    if len(parts) == 2 and parts[1] == "main.typ":
        return True
    return len(parts) == 2 and parts[0] == "web" and rel.endswith(".typ") \
        and rel != WEB_SHARED


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def root_digest(root: Path) -> str:
    """sha256 over the path and bytes of every file under `root` but the pages."""
    h = hashlib.sha256()
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if is_page(rel):
                continue
            h.update(f"{rel}\0{_sha256(path.read_bytes())}\n".encode())
    return h.hexdigest()


def page_key(page: Page, root: str) -> str:
    """The hash of everything that can change `page`'s output (see the module doc);
    `root` is root_digest() of its Typst root."""
    inputs = {
        "page": _sha256(page.main.read_bytes()),
        "lines": [[str(path), line] for path, line in page.linemap],
        "format": page.format,
        "root": root,
        "typst": typst.__version__,
        "compiler": _sha256(Path(pdf.__file__).read_bytes()),
        "cwd": str(Path.cwd()),
    }
    return _sha256(json.dumps(inputs, sort_keys=True).encode())


class Cache:
    """CACHE/NAME.json + CACHE/NAME.SUFFIX: the last output stored under each name,
    with the key it was made from (a page's compile; the source archive too)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _paths(self, name: str, suffix: str) -> tuple[Path, Path]:
        base = self.folder / name
        return base.with_name(f"{base.name}.json"), \
            base.with_name(f"{base.name}.{suffix}")

    def load(self, name: str, suffix: str, key: str
             ) -> tuple[bytes, list[str]] | None:
        """The output and warnings recorded under `key`, or None."""
        meta_path, out_path = self._paths(name, suffix)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            data = out_path.read_bytes()
        except (OSError, ValueError):
            return None
        if meta.get("key") != key or meta.get("sha256") != _sha256(data):
            return None
        return data, list(meta.get("warnings", []))

    def store(self, name: str, suffix: str, key: str, data: bytes,
              warnings: list[str] | None = None) -> None:
        """Output first, then the record that vouches for it (its sha256)."""
        meta_path, out_path = self._paths(name, suffix)
        write_bytes(out_path, data)
        write_json(meta_path, {"key": key, "sha256": _sha256(data),
                               "warnings": warnings or []})


def compile_pages(pages: list[Page], root: Path, sources: pdf.SourceMap,
                  cache: Cache, force: bool = False
                  ) -> tuple[dict[str, bytes], list[str]]:
    """Each page's output (page name -> bytes) and the names of the pages compiled:
    the others are reused from `cache`, where their key matches (never with `force`).
    The compiles run in parallel threads. Warnings are printed in page order; a Typst
    error raises the first failing page's BuildError."""
    digest = root_digest(root)
    keys = {p.name: page_key(p, digest) for p in pages}
    done: dict[str, tuple[bytes, list[str]]] = {}
    if not force:
        for p in pages:
            if (hit := cache.load(p.name, p.format, keys[p.name])) is not None:
                done[p.name] = hit
    todo = [p for p in pages if p.name not in done]
    if todo:
        workers = min(len(todo), len(os.sched_getaffinity(0)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(pdf.compile_page, p.main, root, sources, p.format)
                       for p in todo]
            try:
                for p, future in zip(todo, futures):
                    done[p.name] = future.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        for p in todo:
            cache.store(p.name, p.format, keys[p.name], *done[p.name])
    for p in pages:
        for warning in done[p.name][1]:
            print(f"warning: {warning}", file=sys.stderr)
    return {p.name: done[p.name][0] for p in pages}, [p.name for p in todo]
