"""Lay out the roadmap in lifecycle lanes: one column per lane, rows top to bottom.

1. Lanes are columns (data, model, training, ...), each one box wide, with a gutter
   between two lanes where edges run down. A lane without nodes is left out.
2. Rows: a node sits one row below its lowest parent and below the node before it
   in its lane. Nodes come in reading order, so numbers grow down each lane, every
   edge points down and no two boxes share a cell: boxes cannot overlap.
3. Edges are routed on lines that never cross a box. From the parent's bottom an
   edge goes down into the gap under its row; then down its own column if the cells
   below are empty, or along the gap and down the child's column if those are
   empty, or along the gap to the gutter beside the child's lane, down the gutter,
   and along the gap above the child; then down into the child. Edges that carry
   the same artifact from the same parent share one port, one track and one label
   (a bus), labelled beside its stub: to the left for the left half of a node's
   ports, to the right for the others. The ports on a child's top are ordered by
   where its edges come from,
   so the edges into one node do not cross each other (the crossing reduction a
   fixed grid leaves to do).
`critical_path` finds the chain of parents with the largest total weight (a
track's wall time per step), ties broken towards more steps.

Geometry only, in points: the drawing is Typst (render.py) or the web edition's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    id: str
    x: float  # left
    y: float  # top
    w: float
    h: float

    @property
    def top(self) -> Point:
        return (self.x + self.w / 2, self.y)

    @property
    def bottom(self) -> Point:
        return (self.x + self.w / 2, self.y + self.h)


@dataclass(frozen=True)
class Lane:
    name: str
    x: float  # left of its column (boxes are this wide)
    w: float


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str | None        # the artifact that flows; None: read the source first
    points: list[Point]      # from the source's bottom to the target's top
    label_at: Point | None   # the label's top; only on the first edge of a bus
    label_anchor: str = "start"  # label_at is its left ("start") or right ("end")


@dataclass
class Layout:
    boxes: dict[str, Box]
    edges: list[Edge]
    lanes: list[Lane]
    rows: dict[str, int]
    width: float
    height: float


def assign_rows(order: Sequence[str], lane_of: dict[str, str],
                parents: dict[str, list[str]]) -> dict[str, int]:
    """Row of each node: below its parents and below its lane's previous node."""
    row: dict[str, int] = {}
    last: dict[str, int] = {}  # lane -> row of its lowest node so far
    for n in order:
        missing = [p for p in parents.get(n, []) if p not in row]
        if missing:
            raise ValueError(f"{n!r} comes before its parent(s) {missing}")
        r = max([row[p] + 1 for p in parents.get(n, [])]
                + [last.get(lane_of[n], -1) + 1])
        row[n] = last[lane_of[n]] = r
    return row


def critical_path(order: Sequence[str], parents: dict[str, list[str]],
                  weight: dict[str, float]) -> list[str]:
    """The heaviest chain of parent -> child, first node first."""
    best: dict[str, tuple[float, int]] = {}
    via: dict[str, str | None] = {}
    for n in order:
        before = max(parents.get(n, []), key=lambda p: best[p], default=None)
        total, steps = best[before] if before else (0.0, 0)
        best[n], via[n] = (total + weight.get(n, 0.0), steps + 1), before
    end = max(order, key=lambda n: best[n], default=None)
    path = []
    while end is not None:
        path.append(end)
        end = via[end]
    return path[::-1]


def layout(order: Sequence[str], lane_of: dict[str, str], lanes: Sequence[str],
           edges: Sequence[tuple[str, str, str | None]], *, node_w: float = 86,
           node_h: float = 40, gutter: float = 16, gap: float = 20,
           label_h: float = 9) -> Layout:
    """Boxes and routed edges for nodes `order` (reading order), each in lane
    `lane_of[id]`, one of `lanes`; `edges` are (source, target, artifact or
    None)."""
    parents: dict[str, list[str]] = {n: [] for n in order}
    for s, t, _ in edges:
        parents[t].append(s)
    used = [name for name in lanes if name in set(lane_of[n] for n in order)]
    column = {name: i for i, name in enumerate(used)}
    lane_list = [Lane(name, gutter + i * (node_w + gutter), node_w)
                 for i, name in enumerate(used)]
    row = assign_rows(order, lane_of, parents)
    boxes = {n: Box(n, lane_list[column[lane_of[n]]].x, row[n] * (node_h + gap),
                    node_w, node_h) for n in order}
    nrows = max(row.values(), default=-1) + 1
    occupied = {(column[lane_of[n]], row[n]) for n in order}
    router = _Router(boxes, row, {n: column[lane_of[n]] for n in order}, occupied,
                     node_w, node_h, gutter, gap, label_h)
    routed = router.route(edges)
    return Layout(boxes=boxes, edges=routed, lanes=lane_list, rows=row,
                  width=len(used) * node_w + (len(used) + 1) * gutter,
                  height=nrows * node_h + max(nrows - 1, 0) * gap)


class _Router:
    """Routes edges on the grid of one layout (see the module docstring, 3)."""

    def __init__(self, boxes: dict[str, Box], row: dict[str, int],
                 col: dict[str, int], occupied: set[tuple[int, int]],
                 node_w: float, node_h: float, gutter: float, gap: float,
                 label_h: float):
        self.boxes, self.row, self.col, self.occupied = boxes, row, col, occupied
        self.node_w, self.node_h, self.gutter, self.gap = node_w, node_h, gutter, gap
        self.label_h = label_h

    def gap_top(self, r: int) -> float:
        """Top of the gap under row r."""
        return r * (self.node_h + self.gap) + self.node_h

    def gutter_x(self, k: int) -> float:
        """Left of gutter k (gutter k is left of lane k)."""
        return k * (self.node_w + self.gutter)

    def free(self, column: int, first: int, last: int) -> bool:
        return all((column, r) not in self.occupied for r in range(first, last + 1))

    def route(self, edges: Sequence[tuple[str, str, str | None]]) -> list[Edge]:
        out_ports = self._out_ports(edges)
        anchor = self._label_anchors(out_ports)
        in_ports = self._in_ports(edges)
        plans = []  # (edge, plan): the path's shape before tracks are known
        for s, t, label in edges:
            px, qx = out_ports[(s, label)], in_ports[(s, t)]
            rs, rt = self.row[s], self.row[t]
            cs, ct = self.col[s], self.col[t]
            bus = (s, label)
            if rt == rs + 1 or self.free(cs, rs + 1, rt - 1):
                plan = ("turn", rt - 1, ("bus", bus) if rt == rs + 1 else
                        ("in", s, t))
            elif self.free(ct, rs + 1, rt - 1):
                plan = ("turn", rs, ("bus", bus))
            else:
                # the gutter on the child's side facing the parent; in the same
                # lane, the one on its right (there is one right of every lane)
                plan = ("gutter", ct if ct > cs else ct + 1)
            plans.append(((s, t, label, px, qx), plan))
        gap_keys: dict[int, list] = {}
        gutter_keys: dict[int, list] = {}

        def use(table: dict[int, list], where: int, key) -> None:
            if key not in table.setdefault(where, []):
                table[where].append(key)

        for (s, t, label, _, _), plan in plans:
            if plan[0] == "turn":
                use(gap_keys, plan[1], plan[2])
            else:
                use(gap_keys, self.row[s], ("bus", (s, label)))
                use(gutter_keys, plan[1], (s, label))
                use(gap_keys, self.row[t] - 1, ("in", s, t))
        routed, labelled = [], set()
        for (s, t, label, px, qx), plan in plans:
            src, dst = self.boxes[s], self.boxes[t]
            start, end = (px, src.y + src.h), (qx, dst.y)
            if plan[0] == "turn":
                y = self._track_y(gap_keys, plan[1], plan[2])
                points = [start, end] if px == qx else [start, (px, y), (qx, y), end]
            else:
                y1 = self._track_y(gap_keys, self.row[s], ("bus", (s, label)))
                y2 = self._track_y(gap_keys, self.row[t] - 1, ("in", s, t))
                gx = self._track_x(gutter_keys, plan[1], (s, label))
                points = [start, (px, y1), (gx, y1), (gx, y2), (qx, y2), end]
            label_at, side = None, anchor[(s, label)]
            if label is not None and (s, label) not in labelled:
                labelled.add((s, label))
                label_at = (px + (1.5 if side == "start" else -1.5),
                            src.y + src.h + 2.2)
            routed.append(Edge(s, t, label, points, label_at, side))
        return routed

    def _track_y(self, keys: dict[int, list], r: int, key) -> float:
        """A horizontal track of its own in the gap under row r, below the labels
        and above the arrowheads."""
        tracks = keys[r]
        room = self.gap - self.label_h - 5
        step = min(3.0, room / len(tracks))
        return self.gap_top(r) + self.label_h + step * (tracks.index(key) + 0.5)

    def _track_x(self, keys: dict[int, list], k: int, key) -> float:
        tracks = keys[k]
        step = min(3.0, (self.gutter - 4) / len(tracks))
        middle = self.gutter_x(k) + self.gutter / 2
        return middle + step * (tracks.index(key) - (len(tracks) - 1) / 2)

    def _out_ports(self, edges) -> dict[tuple[str, str | None], float]:
        """One port per (source, artifact) on the source's bottom, ordered by the
        mean column of where they go."""
        goes: dict[str, dict[str | None, list[int]]] = {}
        for s, t, label in edges:
            goes.setdefault(s, {}).setdefault(label, []).append(self.col[t])
        ports = {}
        for s, by_label in goes.items():
            order = sorted(by_label, key=lambda lb: (
                sum(by_label[lb]) / len(by_label[lb]), lb or ""))
            box = self.boxes[s]
            for i, label in enumerate(order):
                ports[(s, label)] = box.x + box.w * (i + 1) / (len(order) + 1)
        return ports

    @staticmethod
    def _label_anchors(out_ports: dict[tuple[str, str | None], float]
                       ) -> dict[tuple[str, str | None], str]:
        """A port's label goes left of its stub in the left half of its node's
        ports (so that two labels never meet), right of it otherwise."""
        by_source: dict[str, list[tuple[float, str | None]]] = {}
        for (s, label), x in out_ports.items():
            by_source.setdefault(s, []).append((x, label))
        anchors = {}
        for s, ports in by_source.items():
            ports.sort(key=lambda p: p[0])
            for i, (_, label) in enumerate(ports):
                left = i < len(ports) // 2
                anchors[(s, label)] = "end" if left else "start"
        return anchors

    def _in_ports(self, edges) -> dict[tuple[str, str], float]:
        """One port per edge on the target's top, ordered by where they come from:
        left columns first, and within a column the lower source first."""
        comes: dict[str, list[str]] = {}
        for s, t, _ in edges:
            comes.setdefault(t, []).append(s)
        ports = {}
        for t, sources in comes.items():
            box = self.boxes[t]
            order = sorted(sources, key=lambda s: (self.col[s], -self.row[s]))
            for i, s in enumerate(order):
                ports[(s, t)] = box.x + box.w * (i + 1) / (len(order) + 1)
        return ports
