"""Which roadmap steps each track includes, read from the book's book/roadmap.toml.

The book owns its roadmap: each `[[node]]` names the tracks that include the step
(`tracks = { beginner = "core", practitioner = "optional" }`) and each
`[track.NAME]` says whom the track is for. A starter repo needs only that much, so
we read the TOML here rather than load the book builder, which also checks
chapters, quoted code and estimates (`python build.py` validates this same file in
full).
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

from llm_reference.errors import UserError

ROADMAP = Path(__file__).resolve().parents[1] / "book" / "roadmap.toml"


@dataclass(frozen=True)
class BookTrack:
    """A track as the book describes it."""

    name: str
    who: str
    nodes: dict[str, str]  # node id -> "core" | "optional", in roadmap order


@functools.cache
def read(path: Path = ROADMAP) -> tuple[dict[str, str], dict[str, BookTrack]]:
    """Every node id in roadmap order with its title, and the tracks."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"{path}: cannot read the book's roadmap ({e}); the scaffold "
                        "runs from a checkout of LLM From Scratch") from None
    raw_nodes = data.get("node", [])
    tracks = {}
    for name, table in data.get("track", {}).items():
        depth = {node["id"]: node["tracks"][name] for node in raw_nodes
                 if name in node.get("tracks", {})}
        tracks[name] = BookTrack(name, table.get("who", ""), depth)
    return {node["id"]: node.get("title", "") for node in raw_nodes}, tracks


def all_nodes() -> list[str]:
    """The roadmap's node ids, in order."""
    return list(read()[0])


def titles() -> dict[str, str]:
    """Node id -> the step's title ("attention" -> "Causal self-attention; …")."""
    return read()[0]


def track(name: str) -> BookTrack:
    """The book's track `name`; an unknown one is a UserError that lists them."""
    tracks = read()[1]
    if name not in tracks:
        raise UserError(f"unknown track {name!r}; choose one of {', '.join(tracks)}")
    return tracks[name]
