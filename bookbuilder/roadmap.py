"""Load and validate book/roadmap.toml: the graph of steps the book walks through.

The file holds the book's tracks (`[track.NAME]`: whom each is for) and one
`[[node]]` per roadmap step, which names the tracks that include it and how deeply
(`tracks = { beginner = "core", researcher = "optional" }`). A track's budgets and
default hardware are not written here: they come from the planner named by
`[book] plan` (llm_reference/plan.py), which the command line and the starter repos
read too, and both must name the same tracks. Every mistake is a `BuildError`
naming the file and line, found with a small index of where each table and each
key starts (tomllib gives values, not positions).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from llm_reference import audit
from llm_reference.atomic import write_json

from . import snippets
from .errors import BuildError

DEPTHS = ("core", "optional")
# the lifecycle lanes of the roadmap drawing, in the order they are drawn
LANES = ("data", "model", "training", "post-training", "deployment")
VERDICTS = ("read", "skim", "skip")  # how a track's reader treats a chapter
NODE_KEYS = {
    "id": str, "title": str, "lane": str, "tracks": dict, "summary": str,
    "chapter": str, "inputs": list, "requires": list, "components": list,
    "code": list, "experiment": str, "check": str, "tools": list,
    "estimate": dict, "compliance": list, "automated_checks": list,
    "guidance": dict,
}
TABLE_LISTS = ("tools", "inputs")  # lists of tables, not of strings
BOOK_KEYS = {"title": str, "subtitle": str, "author": str, "keywords": list,
             "plan": str, "estimates": str, "checks": str, "export": str,
             "references": str}
TRACK_KEYS = {"who": str, "prerequisites": str}
DEFAULT_PLAN = "llm_reference.plan"
DEFAULT_ESTIMATES = "bookbuilder.estimates"


@dataclass(frozen=True)
class Tool:
    name: str
    url: str


@dataclass(frozen=True)
class Input:
    """An edge of the roadmap: what flows into a node from a node before it."""
    source: str    # the id of the node it comes from
    artifact: str  # what flows: "shards", "tokenizer.json", "checkpoint", ...


@dataclass
class Node:
    id: str
    title: str
    line: int                     # line of this node's [[node]] header
    keys: dict[str, int]          # key -> line where it is set
    lane: str = ""                # one of LANES; omitted: its first parent's lane
    tracks: dict[str, str] = field(default_factory=dict)  # track -> core|optional
    summary: str = ""
    chapter: str | None = None    # relative to the book folder; None: in preparation
    inputs: list[Input] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)  # every parent: inputs' too
    components: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    experiment: str | None = None
    check: str | None = None
    check_command: str | None = None  # from the [book] checks module, when it has one
    check_starter: Path | None = None  # the stub the reader fills in (attached)
    tools: list[Tool] = field(default_factory=list)
    estimate: dict[str, Any] = field(default_factory=dict)
    compliance: list[str] = field(default_factory=list)
    automated_checks: list[str] = field(default_factory=list)
    # track -> (verdict, advice): "skim: you know this from ..." in the roadmap
    guidance: dict[str, Any] = field(default_factory=dict)

    def line_of(self, key: str) -> int:
        return self.keys.get(key, self.line)

    @property
    def edges(self) -> list[tuple[str, str | None]]:
        """(parent id, artifact) for each parent; None: read-first, nothing flows."""
        labelled = {i.source: i.artifact for i in self.inputs}
        return [(p, labelled.get(p)) for p in self.requires]


@dataclass(frozen=True)
class Track:
    name: str
    who: str
    prerequisites: str
    hardware: str  # from the planner
    budgets: tuple[str, ...]  # from the planner; the first is the reference run
    depth: dict[str, str]  # node id -> "core" | "optional"; absent: not in this track


@dataclass
class Roadmap:
    path: Path
    book_dir: Path
    src_root: Path
    book: dict[str, Any]
    nodes: list[Node]
    tracks: dict[str, Track]
    plan: ModuleType
    estimates: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    def nodes_in(self, track: str | None) -> list[Node]:
        """Roadmap order; `None` means every node (the all-tracks book)."""
        if track is None:
            return list(self.nodes)
        return [n for n in self.nodes if n.id in self.tracks[track].depth]

    def where(self, node: Node, key: str | None = None) -> str:
        line = node.line if key is None else node.line_of(key)
        return f"{self.path}:{line}"


# ----------------------------------------------------------------- the whole file


def load(book_dir: Path, src_root: Path, plan: ModuleType | None = None,
         estimator: ModuleType | None = None,
         estimate_cache: Path | None = None) -> Roadmap:
    """Parse and validate `book_dir/roadmap.toml`; BuildError on the first problem.

    `plan` and `estimator` replace the modules that [book] plan and [book]
    estimates name. `estimate_cache`: a JSON file that keeps the estimator's
    `node_estimate` results, keyed by its sources (planning a budget takes a while;
    its results only change when the code or calibration data change)."""
    path = book_dir / "roadmap.toml"
    text, data = _read(path)
    book = _book_table(path, data)
    nodes = _nodes(path, text, data)
    _check_graph(path, text, nodes)
    _resolve_lanes(path, nodes)
    if "checks" in book:
        _resolve_checks(path, nodes, load_module(book["checks"], book_dir, "checks"))
    _resolve_audit(path, text, nodes)
    _check_files(path, book_dir, src_root, nodes)
    if plan is None:
        plan = load_module(book.get("plan", DEFAULT_PLAN), book_dir, "plan")
    tracks = _tracks(path, text, data, nodes, plan)
    if estimator is None:
        estimator = load_module(book.get("estimates", DEFAULT_ESTIMATES), book_dir,
                                "estimates")
    return Roadmap(path=path, book_dir=book_dir, src_root=src_root, book=book,
                   nodes=nodes, tracks=tracks, plan=plan,
                   estimates=_estimates(path, nodes, tracks, estimator,
                                        estimate_cache))


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text and its parsed TOML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BuildError(f"{path}: cannot read the roadmap ({e.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise BuildError(f"{path}:{m.group(1) if m else 1}: invalid TOML: "
                         f"{e}") from None
    unknown = set(data) - {"book", "track", "node"}
    if unknown:
        raise BuildError(f"{path}: unknown top-level key(s) {sorted(unknown)}; "
                         "use [book], [track.NAME] and [[node]]")
    return text, data


def _book_table(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    book = data.get("book", {})
    for key, value in book.items():
        if key not in BOOK_KEYS or not isinstance(value, BOOK_KEYS[key]):
            raise BuildError(f"{path}: [book] {key} = {value!r} is unknown or of the "
                             f"wrong type (known: {', '.join(BOOK_KEYS)})")
    return book


def load_module(spec: str, book_dir: Path, key: str) -> ModuleType:
    """A module that [book] names (plan, estimates, checks, export): a dotted name,
    or a .py path in the book."""
    if spec.endswith(".py"):
        path = book_dir / spec
        if not path.is_file():
            raise BuildError(f"{book_dir / 'roadmap.toml'}: [book] {key} file {path} "
                             "does not exist")
        name = "_book_module_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
        mod_spec = importlib.util.spec_from_file_location(name, path)
        assert mod_spec and mod_spec.loader
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        raise BuildError(f"{book_dir / 'roadmap.toml'}: [book] {key} = {spec!r} "
                         f"cannot be imported ({e})") from None


# -------------------------------------------------------------------------- nodes


def _line_index(text: str) -> list[tuple[int, dict[str, int]]]:
    """For each [[node]] block: its header line and the line of each key in it."""
    blocks: list[tuple[int, dict[str, int]]] = []
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if re.fullmatch(r"\[\[\s*node\s*\]\]\s*(#.*)?", stripped):
            blocks.append((number, {}))
            table = ""
        elif m := re.fullmatch(r"\[\s*node\.([\w-]+)\s*\]\s*(#.*)?", stripped):
            table = m.group(1)  # [node.estimate]: the sub-table's header is its line
            if blocks:
                blocks[-1][1].setdefault(table, number)
        elif stripped.startswith("["):
            table = "other"
        elif blocks and not table and (m := re.match(r"([\w-]+)\s*=", stripped)):
            blocks[-1][1].setdefault(m.group(1), number)
    return blocks


def _nodes(path: Path, text: str, data: dict[str, Any]) -> list[Node]:
    raw_nodes = data.get("node", [])
    index = _line_index(text)
    if not raw_nodes or len(index) != len(raw_nodes):
        raise BuildError(f"{path}: expected one [[node]] table per roadmap step")
    return [_node(path, i, raw, *index[i]) for i, raw in enumerate(raw_nodes)]


def _check_type(path: Path, line: int, node_id: str, key: str, value: Any,
                expected: type) -> None:
    if not isinstance(value, expected):
        raise BuildError(f"{path}:{line}: node {node_id!r}: {key} must be a "
                         f"{expected.__name__}, got {type(value).__name__}")
    if expected is list and key not in TABLE_LISTS:
        for item in value:
            if not isinstance(item, str):
                raise BuildError(f"{path}:{line}: node {node_id!r}: every item of "
                                 f"{key} must be a string, got {item!r}")


def _node(path: Path, index: int, data: Any, line: int, keys: dict[str, int]) -> Node:
    if not isinstance(data, dict):
        raise BuildError(f"{path}:{line}: [[node]] number {index + 1} is not a table")
    node_id = data.get("id")
    if not isinstance(node_id, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", node_id):
        raise BuildError(f"{path}:{keys.get('id', line)}: [[node]] number {index + 1} "
                         "needs an id of lowercase letters, digits and '-'")
    for key, value in data.items():
        where = keys.get(key, line)
        if key not in NODE_KEYS:
            raise BuildError(f"{path}:{where}: node {node_id!r}: unknown key {key!r} "
                             f"(known: {', '.join(NODE_KEYS)})")
        _check_type(path, where, node_id, key, value, NODE_KEYS[key])
    if "title" not in data:
        raise BuildError(f"{path}:{line}: node {node_id!r} needs a title")
    tools = []
    for tool in data.get("tools", []):
        if (not isinstance(tool, dict) or set(tool) != {"name", "url"}
                or not str(tool["url"]).startswith(("https://", "http://"))):
            raise BuildError(f"{path}:{keys.get('tools', line)}: node {node_id!r}: "
                             "each tool is { name = \"…\", url = \"https://…\" }, "
                             f"got {tool!r}")
        tools.append(Tool(str(tool["name"]), str(tool["url"])))
    inputs = []
    for item in data.get("inputs", []):
        if (not isinstance(item, dict) or set(item) != {"from", "artifact"}
                or not all(isinstance(v, str) and v for v in item.values())):
            raise BuildError(f"{path}:{keys.get('inputs', line)}: node {node_id!r}: "
                             "each input is { from = \"NODE\", artifact = \"what "
                             f"flows\" }}, got {item!r}")
        inputs.append(Input(item["from"], item["artifact"]))
    requires = list(data.get("requires", []))
    for i in inputs:
        if i.source in requires:
            raise BuildError(f"{path}:{keys.get('inputs', line)}: node {node_id!r}: "
                             f"{i.source!r} is named twice in requires and inputs; "
                             "keep one")
        requires.append(i.source)
    fields = {k: v for k, v in data.items()
              if k not in ("id", "tools", "inputs", "requires")}
    return Node(id=node_id, line=line, keys=keys, tools=tools, inputs=inputs,
                requires=requires, **fields)


def _entry_line(text: str, node: Node, key: str, value: str) -> int:
    """The line, in `node`'s block, that names `value` (e.g. an input's `from`)."""
    lines = text.splitlines()
    for number in range(node.line_of(key), len(lines) + 1):
        if f'"{value}"' in lines[number - 1]:
            return number
    return node.line_of(key)


def _check_graph(path: Path, text: str, nodes: list[Node]) -> None:
    """Unique ids, known parents (requires and inputs) and checks, each parent
    named once, and no cycle."""
    seen: dict[str, Node] = {}
    for n in nodes:
        if n.id in seen:
            raise BuildError(f"{path}:{n.line}: duplicate node id {n.id!r} (first at "
                             f"line {seen[n.id].line})")
        seen[n.id] = n
    for n in nodes:
        for i in n.inputs:
            if i.source not in seen:
                raise BuildError(f"{path}:{_entry_line(text, n, 'inputs', i.source)}: "
                                 f"node {n.id!r}: input from unknown id {i.source!r}")
        for dep in n.requires:
            if dep not in seen:
                raise BuildError(f"{path}:{n.line_of('requires')}: node {n.id!r} "
                                 f"requires unknown id {dep!r}")
        if n.check is not None and n.check not in seen:
            raise BuildError(f"{path}:{n.line_of('check')}: node {n.id!r}: check "
                             f"names unknown node {n.check!r}")
    if cycle := _find_cycle(nodes):
        first = seen[cycle[0]]
        key = "inputs" if cycle[1] in [i.source for i in first.inputs] else "requires"
        line = _entry_line(text, first, key, cycle[1])
        raise BuildError(f"{path}:{line}: requires and inputs form a cycle: "
                         + " -> ".join(cycle))
    position = {n.id: i for i, n in enumerate(nodes)}
    for n in nodes:
        for dep in n.requires:
            if position[dep] > position[n.id]:
                key = "inputs" if dep in [i.source for i in n.inputs] else "requires"
                raise BuildError(f"{path}:{_entry_line(text, n, key, dep)}: node "
                                 f"{n.id!r} needs {dep!r}, which comes later in the "
                                 "file; the file's order is the reading order, so "
                                 "move it before")


def _resolve_lanes(path: Path, nodes: list[Node]) -> None:
    """Each node's lane: its own, or its first parent's (nodes come in an order
    where parents are first, so that lane is already known)."""
    by_id = {n.id: n for n in nodes}
    done: set[str] = set()

    def resolve(n: Node) -> str:
        if n.id not in done:
            done.add(n.id)
            if n.lane and n.lane not in LANES:
                raise BuildError(f"{path}:{n.line_of('lane')}: node {n.id!r}: lane = "
                                 f"{n.lane!r}; use one of {', '.join(LANES)}")
            if not n.lane:
                if not n.requires:
                    raise BuildError(f"{path}:{n.line}: node {n.id!r} has no parent "
                                     "to take its lane from; add lane = \"…\" ("
                                     f"{', '.join(LANES)})")
                n.lane = resolve(by_id[n.requires[0]])
        return n.lane

    for n in nodes:
        resolve(n)


def _find_cycle(nodes: list[Node]) -> list[str] | None:
    """A cycle of requires as a list of ids (first == last), or None."""
    by_id = {n.id: n for n in nodes}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node_id: str) -> list[str] | None:
        state[node_id] = 1
        stack.append(node_id)
        for dep in by_id[node_id].requires:
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node_id] = 2
        return None

    for n in nodes:
        if n.id not in state and (cycle := visit(n.id)):
            return cycle
    return None


def _resolve_checks(path: Path, nodes: list[Node], checks: ModuleType) -> None:
    """Give each node the exact command of its reader checkpoint.

    `checks` is the module named by [book] checks (llm_reference.check): its `NODES`
    are the nodes that have checks and `command_for(id)` is the command to print;
    `starter_for(id)`, if it has one, is the stub file the chapter attaches (when
    it exists).
    """
    for n in nodes:
        if n.check is None:
            continue
        if n.check not in checks.NODES:
            raise BuildError(f"{path}:{n.line_of('check')}: node {n.id!r}: "
                             f"{checks.__name__} has no checks for {n.check!r} (it "
                             f"has {', '.join(checks.NODES)}); drop the key")
        n.check_command = checks.command_for(n.check)
        starter = Path(checks.starter_for(n.check)) if hasattr(
            checks, "starter_for") else None
        if starter is not None and starter.is_file():  # tests/test_check.py: all are
            n.check_starter = starter


AUDIT_PREFIX = "audit:"  # an automated check that `python -m llm_reference audit` runs


def _resolve_audit(path: Path, text: str, nodes: list[Node]) -> None:
    """Turn each `audit:ID` (or `audit:ID:TARGET,TARGET`) entry of automated_checks
    into the exact command that runs it, over all its targets or those named.

    The ids come from llm_reference.audit's registry; an unknown id or target is an
    error at the line that names it, so the book never prints a check that does not
    run.
    """
    for n in nodes:
        resolved = []
        for entry in n.automated_checks:
            if not entry.startswith(AUDIT_PREFIX):
                resolved.append(entry)
                continue
            check_id, _, on = entry.removeprefix(AUDIT_PREFIX).partition(":")
            check = audit.CHECKS.get(check_id)
            targets = on.split(",") if on else None
            if check is None or not set(targets or []) <= set(check.target_names()):
                at = text.find(f'"{entry}"')
                line = text.count("\n", 0, at) + 1 if at >= 0 \
                    else n.line_of("automated_checks")
                known = (f"known ids: {', '.join(audit.CHECKS)}" if check is None else
                         f"its targets: {', '.join(check.target_names())}")
                raise BuildError(f"{path}:{line}: node {n.id!r}: automated check "
                                 f"{entry!r} is not an audit check ({known})")
            resolved.append(f"`{check.command(targets)}` ({check.verifies})")
        n.automated_checks = resolved


def _check_files(path: Path, book_dir: Path, src_root: Path,
                 nodes: list[Node]) -> None:
    """Chapters and experiments exist (experiment names unique), quoted code too."""
    experiments: dict[str, str] = {}
    for n in nodes:
        for key in ("chapter", "experiment"):
            rel = getattr(n, key)
            if rel is not None and not (book_dir / rel).is_file():
                raise BuildError(f"{path}:{n.line_of(key)}: node {n.id!r}: {key} file "
                                 f"{book_dir / rel} does not exist")
        if n.experiment is not None:
            stem = Path(n.experiment).stem
            if stem in experiments:
                raise BuildError(f"{path}:{n.line_of('experiment')}: node {n.id!r}: "
                                 f"experiment name {stem!r} is also used by node "
                                 f"{experiments[stem]!r}")
            experiments[stem] = n.id
        for ref in n.code:
            try:
                snippets.quote(src_root, ref)
            except BuildError as e:
                raise BuildError(f"{path}:{n.line_of('code')}: node {n.id!r}: "
                                 f"{e}") from None


# ------------------------------------------------------------------------- tracks


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def planner_tracks(plan: ModuleType) -> dict[str, tuple[str, tuple[str, ...]]]:
    """plan.TRACKS as {name: (default hardware, budgets)}; dataclasses or dicts."""
    raw = getattr(plan, "TRACKS", None)
    where = getattr(plan, "__file__", None) or plan.__name__
    if not isinstance(raw, dict) or not raw:
        raise BuildError(f"{where}: TRACKS must be a non-empty dict of tracks")
    tracks = {}
    for name, t in raw.items():
        budgets = tuple(str(b) for b in (_get(t, "budgets") or ()))
        if not budgets:
            raise BuildError(f"{where}: TRACKS[{name!r}] has no budgets")
        tracks[name] = (str(_get(t, "default_hardware", "")), budgets)
    return tracks


def _table_lines(text: str, table: str) -> dict[str, int]:
    """The line of each `[table.NAME]` header."""
    lines = {}
    pattern = re.compile(rf"\[\s*{table}\.([\w-]+)\s*\]\s*(#.*)?")
    for number, line in enumerate(text.splitlines(), start=1):
        if m := pattern.fullmatch(line.strip()):
            lines.setdefault(m.group(1), number)
    return lines


def _tracks(path: Path, text: str, data: dict[str, Any], nodes: list[Node],
            plan: ModuleType) -> dict[str, Track]:
    """The [track.NAME] tables, with the planner's budgets and hardware and the
    depth each node gives them."""
    raw, planned = data.get("track", {}), planner_tracks(plan)
    prose = _track_prose(path, raw, _table_lines(text, "track"), planned,
                         plan.__name__)
    depth = _depths(path, nodes, list(raw))
    _guidance(path, text, nodes, depth)
    return {name: Track(name, who, prerequisites, *planned[name], depth[name])
            for name, (who, prerequisites) in prose.items()}


def _track_prose(path: Path, raw: dict[str, Any], lines: dict[str, int],
                 planned: dict[str, Any], planner: str
                 ) -> dict[str, tuple[str, str]]:
    """Each [track.NAME]'s who and prerequisites; the same names as the planner's."""
    if not raw:
        raise BuildError(f"{path}: no tracks; add a [track.NAME] table with who = "
                         f"\"…\" for each of the planner's: {', '.join(planned)}")
    prose = {}
    for name, table in raw.items():
        where = f"{path}:{lines.get(name, 1)}: [track.{name}]"
        if not isinstance(table, dict):
            raise BuildError(f"{where} must be a table")
        for key, value in table.items():
            if key not in TRACK_KEYS or not isinstance(value, TRACK_KEYS[key]):
                raise BuildError(f"{where}: {key} = {value!r} is unknown or not a "
                                 f"string (known: {', '.join(TRACK_KEYS)})")
        if "who" not in table:
            raise BuildError(f"{where} needs who = \"…\" (whom the track is for)")
        if name not in planned:
            raise BuildError(f"{where}: the planner {planner} has no track "
                             f"{name!r} (it has {', '.join(planned)})")
        prose[name] = (table["who"], table.get("prerequisites", ""))
    for name in planned:
        if name not in raw:
            raise BuildError(f"{path}: the planner's track {name!r} has no "
                             f"[track.{name}] table; add one with who = \"…\"")
    return prose


def _depths(path: Path, nodes: list[Node], names: list[str]
            ) -> dict[str, dict[str, str]]:
    """track -> {node id: depth} in roadmap order, from each node's `tracks`; every
    node is in some track, and a track that includes a node includes what it
    requires."""
    depth: dict[str, dict[str, str]] = {name: {} for name in names}
    for n in nodes:
        where = f"{path}:{n.line_of('tracks')}: node {n.id!r}"
        if not n.tracks:
            raise BuildError(f"{where} is in no track; give it e.g. tracks = "
                             f"{{ {names[0]} = \"core\" }}")
        for name, d in n.tracks.items():
            if name not in depth:
                raise BuildError(f"{where}: unknown track {name!r} in tracks "
                                 f"(known: {', '.join(names)})")
            if d not in DEPTHS:
                raise BuildError(f"{where}: tracks.{name} = {d!r}; use core or "
                                 "optional")
            depth[name][n.id] = d
    for n in nodes:
        for name in n.tracks:
            for dep in n.requires:
                if dep not in depth[name]:
                    raise BuildError(f"{path}:{n.line_of('tracks')}: track "
                                     f"{name!r} includes {n.id!r} but not {dep!r}, "
                                     "which it requires")
    return depth


def _key_line(text: str, start: int, key: str) -> int:
    """The line of `key = ` at or after line `start` (a sub-table's key), or start."""
    lines = text.splitlines()
    for number in range(start, len(lines) + 1):
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[number - 1]):
            return number
    return start


def _guidance(path: Path, text: str, nodes: list[Node],
              depth: dict[str, dict[str, str]]) -> None:
    """Check each node's `[node.guidance]` (track = "read|skim|skip: advice") and
    turn it into {track: (verdict, advice)}. Only tracks that include the node may
    have advice for it: the chapter opening prints it to that track's readers."""
    for n in nodes:
        parsed = {}
        for name, value in n.guidance.items():
            line = _key_line(text, n.line_of("guidance"), name)
            where = f"{path}:{line}: node {n.id!r}: guidance.{name}"
            if name not in depth:
                raise BuildError(f"{where}: unknown track {name!r} (known: "
                                 f"{', '.join(depth)})")
            if n.id not in depth[name]:
                raise BuildError(f"{where}: the {name} track leaves this step out; "
                                 "drop the advice or add the track to tracks")
            verdict, _, advice = str(value).partition(":")
            if not isinstance(value, str) or verdict not in VERDICTS \
                    or not advice.strip():
                raise BuildError(f"{where} = {value!r}; write \"read: …\", \"skim: "
                                 f"…\" or \"skip: …\" (the verdict, then why)")
            parsed[name] = (verdict, advice.strip())
        n.guidance = parsed


def check_track(roadmap: Roadmap, track: str | None) -> None:
    """An unknown --track is a user error naming the known ones."""
    if track is not None and track not in roadmap.tracks:
        raise BuildError(f"unknown track {track!r}; known tracks (from "
                         f"{roadmap.path}): " + ", ".join(roadmap.tracks))


# ---------------------------------------------------------------------- estimates


def module_fingerprint(module: ModuleType) -> str:
    """sha256 over a module, the local modules it imports and the data files (JSON,
    TOML) next to any of them: what the estimator's results depend on."""
    from .execute import local_modules, sha256

    path = Path(module.__file__ or "")
    root = path.parents[module.__name__.count(".")]  # where its imports start from
    files = {path, *local_modules(path.read_text(encoding="utf-8"), root)}
    files |= {p for f in list(files) for p in f.parent.iterdir()
              if p.suffix in (".json", ".toml")}
    digest = hashlib.sha256()
    for f in sorted(files):
        digest.update(f"{f.relative_to(root) if f.is_relative_to(root) else f.name}"
                      f"\0{sha256(f.read_bytes())}\0".encode())
    return digest.hexdigest()


def _estimates(path: Path, nodes: list[Node], tracks: dict[str, Track],
               estimator: ModuleType, cache_file: Path | None
               ) -> dict[tuple[str, str], dict[str, Any]]:
    """estimator.node_estimate(spec, track) for every node with a spec, in every
    track that includes it: computed up front, so a bad spec fails before anything
    runs."""
    fingerprint = module_fingerprint(estimator) if cache_file else ""
    cached: dict[str, Any] = {}
    if cache_file is not None and cache_file.is_file():
        with contextlib.suppress(ValueError, OSError):
            cached = json.loads(cache_file.read_text(encoding="utf-8"))
        if cached.get("sources") != fingerprint:
            cached = {}
    results: dict[str, Any] = cached.get("estimates", {})
    out, used = {}, {}
    for n in nodes:
        if not n.estimate:
            continue
        for t in tracks.values():
            if n.id not in t.depth:
                continue
            key = json.dumps([n.estimate, t.name], sort_keys=True)
            if key not in results:
                results[key] = _estimate(path, n, t.name, estimator)
            out[(n.id, t.name)] = used[key] = results[key]
    if cache_file is not None and used != cached.get("estimates"):
        write_json(cache_file, {"sources": fingerprint, "estimates": used})
    return out


def _estimate(path: Path, node: Node, track: str, estimator: ModuleType
              ) -> dict[str, Any]:
    try:
        return estimator.node_estimate(dict(node.estimate), track)
    except Exception as e:  # the estimator rejects the spec: the roadmap's fault
        raise BuildError(f"{path}:{node.line_of('estimate')}: node {node.id!r}: "
                         f"node_estimate({node.estimate}, {track!r}) failed: "
                         f"{type(e).__name__}: {e}") from None
