"""Lay out the roadmap DAG in layers, top to bottom (a small Sugiyama-style layout).

1. Layering by longest path: a node sits one layer below its deepest requirement, so
   every arrow points down.
2. Edges that skip layers get a dummy point in each layer they cross, so they can be
   routed between nodes instead of through them.
3. Ordering within layers by the barycenter heuristic: sweep down and up, sorting each
   layer by the mean position of its neighbours in the layer just fixed, and keep the
   ordering with the fewest edge crossings.
4. Coordinates: each layer is centred; slots never overlap by construction.

The drawing itself is Typst (render.py); this module only computes geometry, in points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations


@dataclass(frozen=True)
class Box:
    id: str
    x: float  # left
    y: float  # top
    w: float
    h: float

    @property
    def top(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y)

    @property
    def bottom(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h)


@dataclass
class Layout:
    boxes: dict[str, Box]
    edges: dict[tuple[str, str], list[tuple[float, float]]]  # (from, to) -> points
    width: float
    height: float
    layers: list[list[str]] = field(default_factory=list)     # real nodes only
    crossings: int = 0


def layers_by_longest_path(order: list[str], requires: dict[str, list[str]]
                           ) -> dict[str, int]:
    layer: dict[str, int] = {}

    def depth(n: str) -> int:
        if n not in layer:
            layer[n] = 1 + max((depth(d) for d in requires.get(n, [])), default=-1)
        return layer[n]

    for n in order:
        depth(n)
    return layer


def count_crossings(layers: list[list[str]], down: dict[str, list[str]]) -> int:
    """Pairs of edges between adjacent layers that cross."""
    total = 0
    for upper, lower in zip(layers, layers[1:]):
        pos = {n: i for i, n in enumerate(lower)}
        edges = [(i, pos[c]) for i, n in enumerate(upper) for c in down.get(n, [])
                 if c in pos]
        total += sum(1 for (a, b), (c, d) in combinations(edges, 2)
                     if (a - c) * (b - d) < 0)
    return total


def _sweep(layers: list[list[str]], neighbours: dict[str, list[str]],
           indices: range) -> None:
    for i in indices:
        ref = layers[i - 1] if indices.step > 0 else layers[i + 1]
        pos = {n: k for k, n in enumerate(ref)}
        current = {n: k for k, n in enumerate(layers[i])}

        def barycenter(n: str, pos=pos, current=current) -> float:
            ps = [pos[m] for m in neighbours.get(n, []) if m in pos]
            return sum(ps) / len(ps) if ps else current[n]

        layers[i].sort(key=lambda n, current=current: (barycenter(n), current[n]))


def layout(order: list[str], requires: dict[str, list[str]], *, node_w: float = 110,
           node_h: float = 32, hgap: float = 14, vgap: float = 20, dummy_w: float = 8,
           sweeps: int = 8) -> Layout:
    """Positions for `order` (node ids) given `requires` (id -> ids it depends on)."""
    layer = layers_by_longest_path(order, requires)
    nlayers = max(layer.values(), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(nlayers)]
    for n in order:
        layers[layer[n]].append(n)

    # split long edges with dummy nodes "~from~to~k"
    down: dict[str, list[str]] = {}
    up: dict[str, list[str]] = {}
    chains: dict[tuple[str, str], list[str]] = {}
    for n in order:
        for d in requires.get(n, []):
            chain = [d]
            for k in range(layer[d] + 1, layer[n]):
                dummy = f"~{d}~{n}~{k}"
                layers[k].append(dummy)
                chain.append(dummy)
            chain.append(n)
            chains[(d, n)] = chain
            for a, b in zip(chain, chain[1:]):
                down.setdefault(a, []).append(b)
                up.setdefault(b, []).append(a)

    best = [list(ly) for ly in layers]
    best_crossings = count_crossings(best, down)
    for _ in range(sweeps):
        _sweep(layers, up, range(1, nlayers, 1))
        _sweep(layers, down, range(nlayers - 2, -1, -1))
        crossings = count_crossings(layers, down)
        if crossings < best_crossings:
            best, best_crossings = [list(ly) for ly in layers], crossings

    def width(n: str) -> float:
        return dummy_w if n.startswith("~") else node_w

    layer_w = [sum(map(width, ly)) + hgap * max(len(ly) - 1, 0) for ly in best]
    total_w = max(layer_w, default=0.0)
    boxes: dict[str, Box] = {}
    for i, ly in enumerate(best):
        x = (total_w - layer_w[i]) / 2
        for n in ly:
            h = 0.0 if n.startswith("~") else node_h
            boxes[n] = Box(n, x, i * (node_h + vgap) + (node_h - h) / 2, width(n), h)
            x += width(n) + hgap

    edges = {}
    for (d, n), chain in chains.items():
        points = [boxes[d].bottom]
        points += [boxes[k].top for k in chain[1:-1]]
        points.append(boxes[n].top)
        edges[(d, n)] = points
    real = {n: b for n, b in boxes.items() if not n.startswith("~")}
    height = nlayers * node_h + max(nlayers - 1, 0) * vgap
    return Layout(real, edges, total_w, height,
                  [[n for n in ly if not n.startswith("~")] for ly in best],
                  best_crossings)
