"""`build()`: roadmap -> experiments -> rendered Typst -> PDFs, code files, manifest.

Every page (each edition's PDF, each web chapter) is rendered first, then the pages
are compiled together (reuse.py): in parallel, and only those whose inputs changed
since the last build; a warm build with nothing edited compiles nothing.

Outputs (all written atomically) under `out`:
  llm-from-scratch.pdf                 every node, every track's estimates
  llm-from-scratch-<track>.pdf         one track's nodes at that track's depth
  code/<node>/<experiment>.py|.ipynb   each node's experiment, source and executed
  build-manifest.json                  versions, input hashes, experiment timings
  .cache/experiments/                  the experiment cache
  .cache/typst/                        the last compiled output of each page
  .cache/source/                       the last source archive and its key
  web/                                 the web edition (web.py), in a full build
  .build/                              the generated Typst (the compiler's root)
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_reference.atomic import write_bytes, write_json

from . import execute, pdf, render, reuse, snippets, source, web
from .errors import BuildError
from .graph import roadmap_graph
from .render import Book, Chapter, Typst, Variant
from .roadmap import Node, Roadmap, check_track, load, load_module

REPO = Path(__file__).resolve().parents[1]
PDF_NAME = "llm-from-scratch"


@dataclass
class Options:
    book_dir: Path = REPO / "book"
    out: Path = REPO / "dist"
    src_root: Path = REPO            # the folder that holds llm_reference/
    templates: Path = REPO / "book" / "templates"
    track: str | None = None         # build only this track's PDF
    only: str | None = None          # preview one node: run its experiment, one PDF
    force: bool = False              # re-run experiments, recompile, even if cached
    no_exec: bool = False            # never run experiments; missing cache is an error
    progress: bool | None = None     # progress display; None: when stderr is a TTY
    html: bool | None = None         # the web edition, out/web; None: unless
                                     # track or only is set (it shows every track)
    screenshots: bool = False        # and PNGs of it (needs Chromium)


@dataclass
class Report:
    pdfs: dict[str, Path]
    results: dict[str, execute.Result]
    manifest: Path | None
    seconds: float
    code_files: list[Path] = field(default_factory=list)
    web_pages: list[Path] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)     # every page, PDFs and web
    compiled: list[str] = field(default_factory=list)  # those not reused (reuse.py)


def pdf_name(variant: Variant) -> str:
    if variant.only:
        return f"preview-{variant.only}.pdf"
    if variant.track is None:
        return f"{PDF_NAME}.pdf"
    return f"{PDF_NAME}-{variant.track}.pdf"


def _variants(roadmap: Roadmap, opts: Options) -> list[Variant]:
    if opts.only is not None:
        if opts.only not in roadmap.by_id:
            raise BuildError(f"--only {opts.only!r}: no such node in {roadmap.path} "
                             f"(known: {', '.join(roadmap.by_id)})")
        return [Variant(f"only-{opts.only}", None, only=opts.only)]
    check_track(roadmap, opts.track)
    if opts.track is not None:
        return [Variant(opts.track, opts.track)]
    return [Variant("all", None)] + [Variant(t, t) for t in roadmap.tracks]


# HARDWARE fields shown in the appendix, in this order: field -> column header
HARDWARE_COLUMNS = {
    "name": "Device", "bf16_tflops": "bf16 TFLOP/s", "fp32_tflops": "fp32 TFLOP/s",
    "peak_tflops": "Peak TFLOP/s", "memory_gib": "Memory GiB", "memory_gb": "Memory GB",
    "bandwidth_gbs": "Bandwidth GB/s", "price_usd": "USD per hour",
    "usd_per_hour": "USD per hour", "mfu": "MFU assumed",
}


def _cell(key: str, value: Any) -> str:
    if isinstance(value, (tuple, list)):  # a (low, high) price range
        low, high = value
        return "–" if high == 0 else f"{low:.2f}–{high:.2f}"
    if key == "mfu":
        return f"{value:.0%}"
    if isinstance(value, float):
        return "–" if value == 0 else f"{value:,.1f}".removesuffix(".0")
    return str(value)


def hardware_table(catalog: Any) -> dict[str, Any] | None:
    """The planner's HARDWARE (name -> dataclass or dict): header, rows, sources."""
    if not isinstance(catalog, dict) or not catalog:
        return None
    items = []
    for name, item in catalog.items():
        fields = dataclasses.asdict(item) if dataclasses.is_dataclass(item) else item
        items.append({"name": name, **fields} if "name" not in fields else fields)
    keys = [k for k in HARDWARE_COLUMNS if any(k in i for i in items)]
    rows = [[_cell(k, i[k]) if k in i else "–" for k in keys] for i in items]
    sources = [f"{i['name']}: {i['source']}" + (f" (read {i['date']})" if i.get(
        "date") else "") for i in items if i.get("source")]
    return {"header": [HARDWARE_COLUMNS[k] for k in keys], "rows": rows,
            "sources": sources}


def _attachments(book: Book, node: Node) -> list[dict[str, str]]:
    """Copy the node's experiment (.py and executed .ipynb) and the starter file of
    its reader check into the Typst root."""
    result = book.results.get(node.id)
    files = []
    if result is not None:
        name = result.experiment.name
        files += [(result.experiment.path, f"{name}.py", "text/x-python",
                   "experiment source (jupytext percent format)"),
                  (result.notebook, f"{name}.ipynb", "application/x-ipynb+json",
                   "experiment notebook, executed by this build")]
    if node.check_starter is not None:
        files.append((node.check_starter, node.check_starter.name, "text/x-python",
                      "starter file for your own implementation (fill it in, then "
                      "run the checkpoint's command)"))
    out = []
    for src, filename, mime, desc in files:
        rel = f"code/{node.id}/{filename}"
        dst = book.build_dir / rel
        _write_if_changed(dst, src.read_bytes())
        out.append({"path": f"/{rel}", "rel": rel, "name": filename,
                    "mime": mime, "description": f"{node.title}: {desc}"})
    return out


def _source(src_root: Path, build_dir: Path, cache: Path) -> dict[str, Any]:
    """The commit this build ran from and the source archive every PDF carries
    (packed again only when a file changed: `cache` keeps the last one)."""
    rel = f"code/{source.ARCHIVE}"
    data = source.archive_bytes(src_root, cache)
    _write_if_changed(build_dir / rel, data)
    return {"revision": source.revision(src_root),
            "version": _version("llm-from-scratch"), "folder": source.PREFIX,
            "attachment": {"path": f"/{rel}", "rel": rel, "name": source.ARCHIVE,
                           "mime": "application/gzip", "bytes": len(data),
                           "description": "the source of llm_reference, the "
                                          "scaffold and this book's builder"}}


# the roadmap page's room for the drawing (points): A4 less margins, title, legend
ROADMAP_FIT = (533.0, 645.0)


def render_variant(book: Book, variant: Variant, env, files: list[Path],
                   exports: dict[str, dict[str, Any]]
                   ) -> tuple[str, list[tuple[Path, int]], list[dict[str, str]]]:
    """The variant's Typst, its line map and its attachments; `exports`: track ->
    its row of export_rows (described once per build, not once per edition)."""
    roadmap = book.roadmap
    nodes = roadmap.nodes_in(variant.track)
    shown = [roadmap.by_id[variant.only]] if variant.only else nodes
    linkable = {n.id for n in shown}
    tracks = roadmap.tracks

    def depths(node: Node) -> list[dict[str, Any]]:
        names = [variant.track] if variant.track else list(tracks)
        return [{"name": t, "depth": tracks[t].depth.get(node.id)} for t in names
                if tracks[t].depth.get(node.id)]

    carded = {n.id for n in shown if n.chapter is not None}
    graph = roadmap_graph(roadmap, variant.track)
    chapters, pending = [], []
    attachments = [] if variant.only else [book.source["attachment"]]
    for node in shown:
        entry: dict[str, Any] = {"node": node, "number": book.number(node),
                                 "depths": depths(node)}
        if node.chapter is not None:
            chapter = Chapter(book, node, variant, linkable)
            ctx = chapter.context()
            ctx.update(book=roadmap.book, tracks=tracks)
            entry["body"] = Typst(render.render_template(env, node.chapter, ctx))
            entry["extra"] = chapter.remaining_boxes()
            entry["opening"] = chapter.opening()
            entry["attachments"] = _attachments(book, node)
            attachments += entry["attachments"]
            entry["card"] = render.node_card(book, node, nodes, linkable, carded)
            entry["estimate"] = render.estimate_card(book, node, variant)
            entry["minimap"] = render.minimap(graph, node.id, linkable, carded)
            chapters.append(entry)
        else:
            entry["code"] = [snippets.quote(roadmap.src_root, ref) for ref in node.code]
            entry["check"] = render.check_command(node)
            entry["estimate"] = render.estimate_line(book, node, variant)
            entry["tools"] = [render.Typst(f"#link({render.tstr(t.url)})"
                                           f"[{render.escape(t.name)}]")
                              for t in node.tools]
            entry["compliance"] = [render.prose(c) for c in node.compliance]
            entry["checks"] = [render.prose(c) for c in node.automated_checks]
            pending.append(entry)

    shown_tracks = list(tracks) if variant.track is None else [variant.track]
    drawing = render.roadmap_drawing(graph, linkable, carded, fit=ROADMAP_FIT)
    legend = render.roadmap_legend(graph, shown_tracks)
    views = []
    if variant.track is None and not variant.only:
        for t in tracks:
            view = roadmap_graph(roadmap, None, t)
            views.append({"track": t, "legend": render.roadmap_legend(view, [t]),
                          "drawing": render.roadmap_drawing(view, linkable, carded,
                                                            fit=ROADMAP_FIT),
                          "critical": [book.number(roadmap.by_id[i])
                                       for i in view["critical_path"]]})
    track_rows = [{"name": t.name, "who": t.who, "prerequisites": t.prerequisites,
                   "hardware": t.hardware, "budgets": list(t.budgets),
                   "core": sum(d == "core" for d in t.depth.values()),
                   "optional": sum(d == "optional" for d in t.depth.values())}
                  for t in tracks.values()
                  if variant.track is None or t.name == variant.track]
    context = {
        "book": roadmap.book, "variant": variant, "tracks": track_rows,
        "all_tracks": list(tracks), "steps": [
            {"node": n, "number": book.number(n), "depths": depths(n),
             "linked": n.id in linkable} for n in nodes],
        "chapters": chapters, "pending": pending, "roadmap": drawing,
        "roadmap_legend": legend, "track_views": views,
        "critical": [book.number(roadmap.by_id[i]) for i in graph["critical_path"]],
        "hardware": hardware_table(getattr(roadmap.plan, "HARDWARE", None)),
        "export": [exports[t["name"]] for t in track_rows if t["name"] in exports],
        "linkable": linkable, "titles": {n.id: n.title for n in roadmap.nodes},
        "version": _version("llm-from-scratch"), "source": book.source,
        "tstr": render.tstr,
        "content": render.content, "num": render.num,
    }
    text = render.render_template(env, "book.typ", context)
    clean, where = render.strip_marks(text, files)
    return clean, where, attachments


def export_rows(roadmap: Roadmap, tracks: list[str]) -> list[dict[str, Any]]:
    """The starter repo of each track's first budget, from the [book] export module.

    The module (the scaffold) describes a repo without writing it: the plan for the
    budget, the command that generates it, and its files.
    """
    spec = roadmap.book.get("export")
    if spec is None:
        return []
    scaffold = load_module(spec, roadmap.book_dir, "export")
    rows = []
    for track in tracks:
        budget = roadmap.tracks[track].budgets[0]
        repo = scaffold.describe(track, budget)
        rows.append({"track": track, "budget": budget, "plan": repo["plan"],
                     "commands": repo["commands"], "files": repo["files"],
                     "command": f"python -m scaffold new --track {track} "
                                f"--budget {budget} -o my-llm"})
    return rows


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write atomically, but only new bytes: an unchanged file keeps its time stamp
    and a warm build writes (and syncs) nothing."""
    if not path.is_file() or path.read_bytes() != data:
        write_bytes(path, data)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _hashes(paths: list[Path], roots: list[Path]) -> dict[str, str]:
    out = {}
    for p in sorted(set(paths)):
        rel = next((str(p.relative_to(r)) for r in roots if p.is_relative_to(r)),
                   str(p))
        out[rel] = execute.sha256(p.read_bytes())
    return out


def build(opts: Options) -> Report:
    start = time.perf_counter()
    book_dir, out, src_root = (opts.book_dir.resolve(), opts.out.resolve(),
                               opts.src_root.resolve())
    roadmap = load(book_dir, src_root,
                      estimate_cache=out / ".cache" / "estimates.json")
    variants = _variants(roadmap, opts)

    needed = [n for n in roadmap.nodes if n.experiment is not None
              and (opts.only is None or n.id == opts.only)
              and any(v.only or v.track is None or n.id in roadmap.tracks[v.track].depth
                      for v in variants)]
    experiments = execute.with_needs(
        [execute.read_experiment(book_dir / n.experiment, n.id, book_dir)
         for n in needed], book_dir)
    results = execute.run_all(experiments, out / ".cache" / "experiments", src_root,
                              book_dir, force=opts.force, no_exec=opts.no_exec,
                              show_progress=opts.progress)
    by_node = {r.experiment.node: r for r in results.values()
               if r.experiment.node is not None}  # shared ones have no chapter

    build_dir = out / ".build"
    build_dir.mkdir(parents=True, exist_ok=True)
    book = Book(roadmap, by_node, opts.templates.resolve(), build_dir)
    book.source = _source(src_root, build_dir, out / ".cache" / "source")
    for name in ("style.typ", "references.yml"):
        src = book.templates / name
        if src.is_file():
            _write_if_changed(build_dir / name, src.read_bytes())
    names = ", ".join(render.tstr(t) for t in roadmap.tracks)
    tracks_typ = ("// written by the builder from the roadmap's tracks\n"
                  f"#let track-names = ({names},)\n")
    _write_if_changed(build_dir / "tracks.typ", tracks_typ.encode())
    files: list[Path] = []
    env = render.make_env([book.templates, book_dir], files)
    sources = pdf.SourceMap(build_dir)
    sources.add_copy(build_dir / "style.typ", book.templates / "style.typ")

    shown = list(roadmap.tracks) if any(v.track is None for v in variants) \
        else [v.track for v in variants]
    exports = {row["track"]: row for row in export_rows(roadmap, shown)}
    pages: list[reuse.Page] = []
    attached: dict[str, dict[str, str]] = {}
    for variant in variants:
        text, where, attachments = render_variant(book, variant, env, files, exports)
        main = build_dir / variant.name / "main.typ"
        _write_if_changed(main, text.encode("utf-8"))
        sources.add(main, where)
        pages.append(reuse.Page(variant.name, main, where))
        attached.update({a["rel"]: a for a in attachments})
    with_web = opts.html is not False and opts.only is None and opts.track is None
    if with_web:
        pages += web.render_web(book, env, files, sources)

    compiled, recompiled = reuse.compile_pages(
        pages, build_dir, sources, reuse.Cache(out / ".cache" / "typst"), opts.force)
    pdfs: dict[str, Path] = {}
    for variant in variants:
        target = out / pdf_name(variant)
        _write_if_changed(target, compiled[variant.name])
        pdfs[variant.name] = target

    code_files = []
    for rel in sorted(attached):
        dst = out / rel
        _write_if_changed(dst, (build_dir / rel).read_bytes())
        code_files.append(dst)
    if opts.only is None and opts.track is None and (out / "code").is_dir():
        keep = set(code_files)
        for stale in (out / "code").rglob("*"):
            if stale.is_file() and stale not in keep:
                stale.unlink()

    web_pages = web.write_web(book, compiled, out / "web") if with_web else []
    shots = web.screenshots(out / "web") if opts.screenshots else []

    manifest = None
    if opts.only is None:
        manifest = out / "build-manifest.json"
        write_json(manifest, _manifest(book, results, pdfs, files, start))
    return Report(pdfs, results, manifest, time.perf_counter() - start, code_files,
                  web_pages, shots, [p.name for p in pages], recompiled)


def _manifest(book: Book, results: dict[str, execute.Result], pdfs: dict[str, Path],
              files: list[Path], start: float) -> dict[str, Any]:
    roadmap = book.roadmap
    roots = [roadmap.book_dir, roadmap.src_root, book.templates.parent]
    inputs = [roadmap.path, *files, book.templates / "style.typ"]
    inputs += [roadmap.src_root / path for path in book.quoted.values()]
    for r in results.values():
        inputs += [r.experiment.path, *r.experiment.data]
    modules: dict[str, str] = {}
    for r in results.values():
        keys = {name: results[name].key for name in r.experiment.needs}
        modules.update(execute.cache_inputs(r.experiment, roadmap.src_root,
                                            roadmap.book_dir, keys)["modules"])
    refs = book.templates / "references.yml"
    if refs.is_file():
        inputs.append(refs)
    return {
        "versions": {
            "python": sys.version.split()[0],
            "typst": pdf.typst_version(),
            **{d: _version(d) for d in ("torch", "jinja2", "jupytext", "nbclient",
                                        "ipykernel", "llm-from-scratch")},
        },
        "inputs": {**_hashes([p for p in inputs if p.is_file()], roots), **modules},
        "experiments": {name: {"node": r.experiment.node, "key": r.key,
                               "cache_hit": r.cache_hit, "seconds": r.seconds}
                        for name, r in results.items()},
        "outputs": {p.name: execute.sha256(p.read_bytes()) for p in pdfs.values()},
        "build_seconds": round(time.perf_counter() - start, 3),
    }
