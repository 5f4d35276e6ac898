"""The roadmap laid out, as plain data: what the PDF's drawing and the web edition's
both draw, so that they show the same graph.

`roadmap_graph` returns only dicts, lists, strings and numbers (JSON as is): boxes
in points, lanes (columns), edges with the artifact they carry (`label`; None: read
the source first) and their routed points (straight segments, down or across),
each node's depth in every track, the shown track's time and cost per node, and
its critical path. How it looks is the drawing's business (render.py for Typst).
"""

from __future__ import annotations

from typing import Any

from .layout import critical_path, layout
from .roadmap import LANES, Node, Roadmap


def roadmap_graph(roadmap: Roadmap, edition: str | None = None,
                  track: str | None = None, **geometry: float) -> dict[str, Any]:
    """The graph of `edition`'s nodes (a track's, or None: every node), showing
    `track` (default: the edition's; None: no track, so no times, costs or
    critical path, which runs through the track's core steps). `geometry`:
    node_w, node_h, gutter, gap, label_h for layout()."""
    track = track or edition
    nodes = roadmap.nodes_in(edition)
    ids = {n.id for n in nodes}
    edges = [(p, n.id, artifact) for n in nodes for p, artifact in n.edges
             if p in ids]
    cost = {n.id: roadmap.estimates.get((n.id, track), {}) if track else {}
            for n in nodes}
    geo = layout([n.id for n in nodes], {n.id: n.lane for n in nodes}, LANES,
                 edges, **geometry)
    critical = _critical(roadmap, nodes, edges, cost, track) if track else []
    on_path = set(zip(critical, critical[1:]))
    tracks = roadmap.tracks
    return {
        "edition": edition, "track": track,
        "width": geo.width, "height": geo.height,
        "lanes": [{"name": lane.name, "x": lane.x, "w": lane.w} for lane in geo.lanes],
        "nodes": [{
            "id": n.id, "number": roadmap.nodes.index(n) + 1, "title": n.title,
            "lane": n.lane, "row": geo.rows[n.id], "components": list(n.components),
            "x": geo.boxes[n.id].x, "y": geo.boxes[n.id].y,
            "w": geo.boxes[n.id].w, "h": geo.boxes[n.id].h,
            "depths": {t: tracks[t].depth.get(n.id) for t in tracks},
            "depth": tracks[track].depth.get(n.id) if track else None,
            "seconds": cost[n.id].get("seconds"),
            "cost_usd": cost[n.id].get("cost_usd"),
            "hardware": cost[n.id].get("hardware"),
            "pending": n.chapter is None,
            "critical": n.id in critical,
        } for n in nodes],
        "edges": [{
            "source": e.source, "target": e.target, "label": e.label,
            "points": [[x, y] for x, y in e.points],
            "label_at": list(e.label_at) if e.label_at else None,
            "label_anchor": e.label_anchor,
            "critical": (e.source, e.target) in on_path,
        } for e in geo.edges],
        "critical_path": critical,
    }


def _critical(roadmap: Roadmap, nodes: list[Node],
              edges: list[tuple[str, str, str | None]], cost: dict[str, Any],
              track: str) -> list[str]:
    """The track's critical path: the chain of its core steps that takes longest
    on its hardware (optional steps are the reader's choice, not the path's)."""
    core = [n.id for n in nodes if roadmap.tracks[track].depth.get(n.id) == "core"]
    parents: dict[str, list[str]] = {n: [] for n in core}
    for s, t, _ in edges:
        if s in parents and t in parents:
            parents[t].append(s)
    weight = {n: float(cost[n].get("seconds", 0) or 0) for n in core}
    return critical_path(core, parents, weight)
