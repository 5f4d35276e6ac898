"""The web edition's roadmap page: the PDF's graph, whose nodes open in place.

The geometry is the PDF's (layout.py), read in one place, `graph()`, as plain data:
nodes with boxes, edges with their points and labels, lanes. The page draws the
edges as an inline SVG and each node as a button over it; a button expands its
node card (summary, key snippet, downloads, tools, each track's estimate, the check
command, a link into the chapter). A track selector marks each node core, optional
or absent and shows that track's estimates; roadmap.js does both, with no network.
On a narrow screen web.css drops the coordinates and the nodes read as a list.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import jinja2
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from . import snippets
from .graph import roadmap_graph
from .render import Book, check_command, duration, money, size

SCALE = 1.6          # CSS pixels per layout point: the PDF's boxes hold 7 pt text
SNIPPET_LINES = 24   # a card quotes at most this many lines of its key symbol


# the PDF's track colours (templates/style.typ), in the order of the roadmap's tracks
TRACK_PALETTE = ("#2da44e", "#0969da", "#8250df", "#bc4c00", "#bf3989")


def tracks_css(book: Book) -> str:
    """tracks.css: one colour per track, as style.typ's track-color() gives it."""
    out = []
    for i, t in enumerate(book.roadmap.tracks):
        color = TRACK_PALETTE[i % len(TRACK_PALETTE)]
        out.append(f".track-{t}, .graph[data-track=\"{t}\"] .node "
                   f"{{ --track: {color}; }}\n")
    return "".join(out)


def graph(book: Book) -> dict[str, Any]:
    """The roadmap's geometry as plain data, in layout points: the PDF's own graph
    (graph.roadmap_graph) of every node, lanes as columns, edges as straight
    segments with their artifact labels. The only function that reads the layout.
    """
    return roadmap_graph(book.roadmap)


def px(value: float) -> str:
    """Layout points -> CSS pixels, short and stable: 110 -> '176', 7.5 -> '12'."""
    return f"{value * SCALE:.1f}".removesuffix(".0")


def edge_path(points: list[tuple[float, float]]) -> str:
    """The PDF's edge: straight segments, down or across, between its points."""
    (x, y), *rest = points
    return " ".join([f"M{px(x)} {px(y)}", *(f"L{px(x1)} {px(y1)}" for x1, y1 in rest)])


def flops(value: float) -> str:
    """3.1e15 -> '3.1 × 10¹⁵'; 0 -> '–'."""
    if not value:
        return "–"
    exp = math.floor(math.log10(abs(value)))
    if exp < 6:
        return f"{value:,.0f}"
    sup = str(exp).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{value / 10 ** exp:.1f} × 10{sup}"


def estimate_cells(est: dict[str, Any] | None) -> dict[str, str]:
    """A node_estimate (estimates.py) as label -> text; None: not in the track."""
    if est is None:
        return {"Hardware": "not in this track"}
    return {"Hardware": str(est.get("hardware", "?")),
            "Compute": flops(float(est.get("flops", 0) or 0)),
            "Wall time": duration(float(est.get("seconds", 0) or 0)),
            "Cost": money(est.get("cost_usd", 0)),
            "Memory": size(float(est.get("memory_bytes", 0) or 0)),
            "Note": str(est.get("note", "")).replace("`", "")}


def estimate_table(per_track: dict[str, dict[str, str]]
                   ) -> list[tuple[str, list[tuple[str, str]]]]:
    """Rows (label, [(track, text)]) of the card's estimate, one column per
    track; a row that says nothing for every track is left out."""
    labels = list(dict.fromkeys(k for cells in per_track.values() for k in cells))
    rows = []
    for label in labels:
        cells = [(t, per_track[t].get(label, "–")) for t in per_track]
        if all(text in ("–", "", "none") for _, text in cells):
            continue
        rows.append((label, cells))
    return rows


def badge(est: dict[str, Any] | None) -> str:
    """The line under a node's title for one track: time and cost."""
    if est is None:
        return "not in this track"
    seconds = float(est.get("seconds", 0) or 0)
    cost = money(est.get("cost_usd", 0))
    if seconds <= 0:
        return "reading"
    return duration(seconds) + ("" if cost == "none" else f" · {cost}")


def snippet(book: Book, ref: str) -> dict[str, Any]:
    s = snippets.quote(book.roadmap.src_root, ref)
    lines = textwrap.dedent(s.text).split("\n")
    cut = len(lines) > SNIPPET_LINES
    code = "\n".join(lines[:SNIPPET_LINES]) + ("\n..." if cut else "")
    html = highlight(code, PythonLexer(), HtmlFormatter(cssclass="hl"))
    return {"ref": ref, "where": f"{s.path}:{s.first}–{s.last}",
            "html": jinja2.filters.Markup(html)}


def downloads(book: Book, node_id: str) -> list[dict[str, str]]:
    result = book.results.get(node_id)
    if result is None:
        return []
    name = result.experiment.name
    return [{"href": f"code/{name}.py", "name": f"{name}.py",
             "what": "experiment source"},
            {"href": f"code/{name}.ipynb", "name": f"{name}.ipynb",
             "what": "notebook, executed by this build"}]


def track_summary(book: Book, track: str) -> dict[str, Any]:
    """How many steps a track has at each depth, and its core steps' totals."""
    roadmap = book.roadmap
    depth = roadmap.tracks[track].depth
    core = [n.id for n in roadmap.nodes if depth.get(n.id) == "core"]
    ests = [roadmap.estimates[(n, track)] for n in core
            if (n, track) in roadmap.estimates]
    seconds = sum(float(e.get("seconds", 0) or 0) for e in ests)
    cost = {"low": 0.0, "high": 0.0}
    for e in ests:
        c = e.get("cost_usd", 0)
        low, high = (c["low"], c["high"]) if isinstance(c, dict) else (c, c)
        cost = {"low": cost["low"] + low, "high": cost["high"] + high}
    return {"name": track, "core": len(core),
            "optional": sum(d == "optional" for d in depth.values()),
            "absent": len(roadmap.nodes) - len(depth),
            "time": duration(seconds), "cost": money(cost),
            "hardware": roadmap.tracks[track].hardware}


def cards(book: Book, geo: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything each node's button and card show, in reading order (top to
    bottom, left to right), which is also the keyboard's tab order."""
    roadmap = book.roadmap
    tracks = roadmap.tracks
    out = []
    for box in sorted(geo["nodes"], key=lambda b: (b["y"], b["x"])):
        node = roadmap.by_id[box["id"]]
        per_track, cells = [], {}
        for t in tracks:
            inside = node.id in tracks[t].depth
            est = roadmap.estimates.get((node.id, t)) if inside else None
            per_track.append({"track": t, "depth": tracks[t].depth.get(node.id,
                                                                        "absent"),
                              "badge": badge(est if inside else None)})
            cells[t] = estimate_cells(est)
        out.append({
            "node": node, "number": book.number(node), "box": box,
            "first": next((t for t in tracks if node.id in tracks[t].depth), ""),
            "style": (f"--x:{px(box['x'])}px;--y:{px(box['y'])}px;"
                      f"--w:{px(box['w'])}px;--h:{px(box['h'])}px"),
            "right": box["x"] + box["w"] / 2 > geo["width"] / 2,
            "tracks": per_track, "estimate": estimate_table(cells),
            "all": "core" if any(t["depth"] == "core" for t in per_track)
                   else "optional",
            "snippet": snippet(book, node.code[0]) if node.code else None,
            "downloads": downloads(book, node.id),
            "check": check_command(node),
            "chapter": f"{node.id}.html" if node.chapter is not None else None,
        })
    return out


def roadmap_page(book: Book, shells: jinja2.Environment) -> str:
    """index.html: the title, the track selector and the interactive graph."""
    geo = graph(book)
    edges = [{"d": edge_path(e["points"]), "source": e["source"],
              "target": e["target"], "label": e["label"],
              "anchor": e["label_anchor"] or "start",
              "at": tuple(map(px, e["label_at"] or e["points"][len(e["points"]) // 2]))}
             for e in geo["edges"]]
    return shells.get_template("index.html").render(
        book=book.roadmap.book, width=px(geo["width"]), height=px(geo["height"]),
        edges=edges, cards=cards(book, geo),
        lanes=[{"name": ln["name"], "x": px(ln["x"]), "w": px(ln["w"])}
               for ln in geo["lanes"]],
        tracks=[track_summary(book, t) for t in book.roadmap.tracks])
