"""The web edition: `python build.py` writes OUT/web/ from the PDF's sources.

Each chapter is the same Jinja2 + Typst source as in the PDF, rendered with the same
`Chapter` helpers, then compiled by Typst's own HTML export: equations come out as
MathML, code highlighted as in the PDF, labels as ids. Only the look differs:
templates/web/style.typ defines the PDF's box functions (panel, checkpoint-box,
estimate-card ...) as HTML elements that web.css styles. The builder then puts each
page's body in templates/web/page.html (navigation, stylesheet) with Jinja2's HTML
escaping. The roadmap page is written by webroadmap.py. The pages are compiled with
the PDFs (reuse.py: in parallel, and only those whose inputs changed): `render_web`
writes their Typst, `write_web` the site from what Typst made of it.

Outputs under OUT/web/ (written only when their bytes change, stale files removed):
  index.html            the roadmap, interactive (roadmap.js, no network needed)
  NODE.html             one page per written chapter
  assets/EXP/NAME.svg   the experiments' figures the pages show
  code/EXP.py|.ipynb    each node's experiment, source and executed notebook
  web.css, roadmap.js   copied from templates/web/
  tracks.css            each track's colour (the PDF's), pygments.css: the cards' code
  screenshots/          with --screenshots only: PNGs for the README (kept by builds)

Why Typst's HTML export and not a second renderer: the chapters are Typst markup
(equations, emphasis, tables, figures, citations); rendering that ourselves would
mean writing a Typst parser. The export is marked experimental (its warning is
silenced in pdf.py), so the pages are checked in a real browser (tests/test_web.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from pygments.formatters import HtmlFormatter

from llm_reference.atomic import write_bytes, write_text

from . import browser, pdf, render, reuse, webroadmap
from .render import Book, Chapter, Typst, Variant
from .roadmap import Node

WEB_VARIANT = Variant("web", None, web=True)
STATIC = ("web.css", "roadmap.js")
BODY = re.compile(r"<body>(.*)</body>", re.S)
HEADING = re.compile(r"<(/?)h([2-6])\b")
IMAGE = re.compile(r'<img src="(assets/[^"]+)"')


@dataclass
class Page:
    node_id: str
    title: str
    href: str


def html_env(templates: Path) -> jinja2.Environment:
    """Jinja2 for the HTML shells: standard delimiters, HTML escaping on."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates / "web"),
        undefined=jinja2.StrictUndefined, autoescape=True,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


class Writer:
    """Writes files under the web folder, only when their bytes change, and
    remembers them so that files of earlier builds can be removed."""

    def __init__(self, root: Path):
        self.root = root
        self.written: set[Path] = set()

    def bytes(self, rel: str, data: bytes) -> Path:
        path = self.root / rel
        if not path.is_file() or path.read_bytes() != data:
            write_bytes(path, data)
        self.written.add(path)
        return path

    def text(self, rel: str, text: str) -> Path:
        return self.bytes(rel, text.encode("utf-8"))

    def remove_stale(self) -> None:
        for path in sorted(self.root.rglob("*"), reverse=True):
            if path.is_file() and path not in self.written and \
                    path.parent.name != "screenshots":
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def page_body(html: str) -> str:
    """The body of Typst's HTML page, headings one level up: Typst keeps <h1> for
    the document's title, so the chapter's `=` heading is <h2>; here it is the
    page's <h1>."""
    m = BODY.search(html)
    body = m.group(1) if m else html
    return HEADING.sub(lambda h: f"<{h.group(1)}h{int(h.group(2)) - 1}", body)


def chapter_pages(book: Book) -> list[Page]:
    return [Page(n.id, n.title, f"{n.id}.html") for n in book.roadmap.nodes
            if n.chapter is not None]


def render_chapter(book: Book, node: Node, env: jinja2.Environment,
                   files: list[Path]) -> tuple[str, list[tuple[Path, int]]]:
    """The chapter's web page as Typst source, and its line map."""
    roadmap = book.roadmap
    tracks = roadmap.tracks
    linkable = {n.id for n in roadmap.nodes}
    chapter = Chapter(book, node, WEB_VARIANT, linkable)
    ctx = chapter.context()
    ctx.update(book=roadmap.book, tracks=tracks)
    body = render.render_template(env, node.chapter, ctx)
    depths = [{"name": t, "depth": tracks[t].depth[node.id]} for t in tracks
              if node.id in tracks[t].depth]
    entry = {"node": node, "number": book.number(node), "depths": depths,
             "body": Typst(body), "extra": chapter.remaining_boxes(),
             "opening": chapter.opening()}
    text = render.render_template(env, "web/chapter.typ", {"ch": entry})
    return render.strip_marks(text, files)


def copy_typst_files(book: Book) -> None:
    """web/style.typ into the Typst root, beside the PDF's style.typ."""
    src = book.templates / "web" / "style.typ"
    dst = book.build_dir / "web" / "style.typ"
    if not dst.is_file() or dst.read_bytes() != src.read_bytes():
        write_bytes(dst, src.read_bytes())


def render_web(book: Book, env: jinja2.Environment, files: list[Path],
               sources: pdf.SourceMap) -> list[reuse.Page]:
    """Render each chapter's web page as Typst under the root (web/NODE.typ), to be
    compiled with the PDFs (reuse.compile_pages, page names web/NODE)."""
    copy_typst_files(book)
    sources.add_copy(book.build_dir / "web" / "style.typ",
                     book.templates / "web" / "style.typ")
    pages = []
    for page in chapter_pages(book):
        node = book.roadmap.by_id[page.node_id]
        text, where = render_chapter(book, node, env, files)
        main = book.build_dir / "web" / f"{node.id}.typ"
        if not main.is_file() or main.read_text(encoding="utf-8") != text:
            write_text(main, text)
        sources.add(main, where)
        pages.append(reuse.Page(f"web/{node.id}", main, where, format="html"))
    return pages


def write_web(book: Book, compiled: dict[str, bytes], out: Path) -> list[Path]:
    """Write the web edition under `out` (OUT/web) from the chapters' compiled HTML
    (page name web/NODE -> bytes); returns the pages written, the roadmap first."""
    writer = Writer(out)
    shells = html_env(book.templates)
    pages = chapter_pages(book)
    written = []
    for i, page in enumerate(pages):
        node = book.roadmap.by_id[page.node_id]
        body = page_body(compiled[f"web/{node.id}"].decode("utf-8"))
        for rel in IMAGE.findall(body):
            writer.bytes(rel, (book.build_dir / rel).read_bytes())
        written.append(writer.text(page.href, shells.get_template("page.html").render(
            book=book.roadmap.book, page=page, number=book.number(node),
            body=jinja2.filters.Markup(body),
            previous=pages[i - 1] if i > 0 else None,
            next=pages[i + 1] if i + 1 < len(pages) else None)))
    for result in book.results.values():  # the downloads of pages and cards
        name = result.experiment.name
        writer.bytes(f"code/{name}.py", result.experiment.path.read_bytes())
        writer.bytes(f"code/{name}.ipynb", result.notebook.read_bytes())
    for node in book.roadmap.nodes:  # the reader checks' starter files
        if node.check_starter is not None:
            starter = node.check_starter
            writer.bytes(f"code/{starter.name}", starter.read_bytes())
    writer.bytes(f"code/{book.source['attachment']['name']}",
                 (book.build_dir / book.source["attachment"]["rel"]).read_bytes())
    index = webroadmap.roadmap_page(book, shells)
    written.insert(0, writer.text("index.html", index))
    for name in STATIC:
        writer.bytes(name, (book.templates / "web" / name).read_bytes())
    writer.text("tracks.css", webroadmap.tracks_css(book))
    writer.text("pygments.css", HtmlFormatter(style="default").get_style_defs(".hl"))
    writer.remove_stale()
    return written


def screenshots(web_dir: Path, chapter: str = "attention.html") -> list[Path]:
    """PNGs of the roadmap (one card open) and of a chapter, for the README, in
    web_dir/screenshots/ (a PNG's bytes may differ between Chromium versions)."""
    shots = web_dir / "screenshots"
    pages = sorted(p.name for p in web_dir.glob("*.html") if p.name != "index.html")
    chapter = chapter if chapter in pages else pages[0]
    with browser.Browser(browser.require_chromium(), width=1280, height=1000) as b:
        b.goto((web_dir / "index.html").as_uri())
        count = b.evaluate("document.querySelectorAll('.node').length")
        b.click(f".nodes > li:nth-child({min(6, count)}) .node-button")
        first = b.screenshot(shots / "roadmap.png")
        b.goto((web_dir / chapter).as_uri())
        return [first, b.screenshot(shots / "chapter.png", full_page=False)]
