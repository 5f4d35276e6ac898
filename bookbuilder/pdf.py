"""Compile the rendered Typst to PDF (or HTML pages), reproducibly, with errors on
source lines.

Reproducible: only the fonts bundled with the `typst` package (system fonts ignored,
no extra font folders), `date: none` in the document and a fixed timestamp, so the
same inputs give the same bytes. Errors: Typst reports a span in the generated file;
the line maps from `render.strip_marks` turn it into the chapter or template line
that produced it.
"""

from __future__ import annotations

import re
from pathlib import Path

import typst

from .errors import BuildError

LOCATION = re.compile(r"┌─ (.+?):(\d+):(\d+)")
LineMap = list[tuple[Path, int]]


def show(path: Path) -> str:
    """A path as short as possible: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class SourceMap:
    """Generated file -> its line map; plain copies (style.typ) map to themselves."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.maps: dict[Path, LineMap] = {}
        self.copies: dict[Path, Path] = {}

    def add(self, generated: Path, linemap: LineMap) -> None:
        self.maps[generated.resolve()] = linemap

    def add_copy(self, generated: Path, source: Path) -> None:
        self.copies[generated.resolve()] = source

    def locate(self, shown: str, line: int) -> tuple[Path, int] | None:
        for base in (Path.cwd(), self.root):
            path = (base / shown).resolve()
            if path in self.maps:
                linemap = self.maps[path]
                return linemap[min(line, len(linemap)) - 1]
            if path in self.copies:
                return self.copies[path], line
        return None

    def explain(self, diagnostic: str) -> list[str]:
        """'file:line' of every span in a Typst diagnostic, mapped to sources."""
        found = []
        for m in LOCATION.finditer(diagnostic):
            where = self.locate(m.group(1), int(m.group(2)))
            found.append(f"{show(where[0])}:{where[1]}" if where
                         else f"{m.group(1)}:{m.group(2)}")
        return found


def compile_page(main: Path, root: Path, sources: SourceMap, format: str = "pdf"
                 ) -> tuple[bytes, list[str]]:
    """The PDF's bytes (or, with format="html", the web page's: Typst's HTML export)
    and its warnings, each 'chapter.typ:LINE: message'; BuildError
    'chapter.typ:LINE: typst error: message' on a Typst error. Safe to call from
    several threads at once (reuse.compile_pages does)."""
    try:
        out, diagnostics = typst.compile_with_warnings(
            str(main), root=str(root), font_paths=[], ignore_system_fonts=True,
            timestamp=0, format=format)
    except typst.TypstError as e:
        places = sources.explain(e.diagnostic)
        where = places[0] if places else show(main)
        hints = "".join(f"; hint: {h}" for h in e.hints)
        trace = "".join(f"\n  {t} ({p})" for t, p in zip(e.trace, places[1:]))
        raise BuildError(f"{where}: typst error: {e.message}{hints}{trace}\n"
                         f"(generated file: {show(main)})") from None
    warnings = []
    for w in diagnostics:
        if format == "html" and w.message.startswith("html export is under active"):
            continue  # said on every page; the pages are tested in a browser
        places = sources.explain(w.diagnostic)
        warnings.append(f"{places[0] if places else show(main)}: {w.message}")
    assert isinstance(out, bytes)
    return out, warnings


def typst_version() -> str:
    """The Typst compiler bundled by the python package (it writes it as /Creator)."""
    out = typst.compile(b"#set document(date: none)", ignore_system_fonts=True,
                        font_paths=[])
    m = re.search(rb"<xmp:CreatorTool>(Typst [^<]*)<", out)
    package = typst.__version__
    return f"{m.group(1).decode()} (typst-py {package})" if m else f"typst-py {package}"

