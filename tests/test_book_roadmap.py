"""Roadmap validation (each error with file and line) and the DAG layout."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bookbuilder import roadmap
from bookbuilder.errors import BuildError
from bookbuilder.estimates import node_estimate
from bookbuilder.graph import roadmap_graph
from bookbuilder.layout import critical_path, layout
from llm_reference.plan import TRACKS

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "book"


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A writable copy of the fixture book."""
    dst = tmp_path / "book"
    shutil.copytree(FIXTURE, dst)
    return dst


def edit(book: Path, old: str, new: str) -> None:
    path = book / "roadmap.toml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def line_of(book: Path, needle: str, start: int = 1) -> int:
    lines = (book / "roadmap.toml").read_text().splitlines()
    for number in range(start, len(lines) + 1):
        if needle in lines[number - 1]:
            return number
    raise AssertionError(needle)


def error(book: Path) -> str:
    with pytest.raises(BuildError) as e:
        roadmap.load(book, REPO)
    message = str(e.value)
    assert "\n" not in message, "roadmap errors are one line"
    return message


def test_fixture_roadmap_loads():
    road = roadmap.load(FIXTURE, REPO)
    assert [n.id for n in road.nodes] == ["intro", "write", "extra", "later"]
    assert road.by_id["write"].requires == ["intro"]
    assert road.by_id["later"].edges == [("write", "files"), ("extra", "notes")]
    assert road.by_id["later"].inputs[0] == roadmap.Input("write", "files")
    # a lane is given, or inherited from the first parent
    assert [n.lane for n in road.nodes] == ["data", "data", "training", "data"]
    assert road.by_id["intro"].components == ["greeting"]
    assert road.by_id["later"].chapter is None
    assert road.tracks["basic"].depth == {"intro": "core", "write": "core",
                                          "extra": "optional"}
    assert [n.id for n in road.nodes_in("basic")] == ["intro", "write", "extra"]
    full = road.tracks["full"]  # prose from the roadmap, the rest from plan.py
    assert (full.who, full.prerequisites) == ("everyone else", "the basic track")
    assert (full.hardware, full.budgets) == ("1xA100", ("1xA100:8h",))
    assert road.by_id["intro"].line == line_of(FIXTURE, "[[node]]")


def test_unknown_requires_names_file_and_line(book):
    edit(book, 'requires = ["intro"]\ncode', 'requires = ["intro", "nope"]\ncode')
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'nope')}:" in msg
    assert "'write'" in msg and "'nope'" in msg


def test_cycle_is_reported_with_its_path(book):
    edit(book, 'id = "intro"\n', 'id = "intro"\nrequires = ["later"]\n')
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'requires = [' + chr(34) + 'later')}:" in msg
    assert "cycle" in msg and "intro" in msg and "later" in msg


def test_missing_chapter_file(book):
    (book / "chapters" / "03-extra.typ").unlink()
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'chapters/03-extra.typ')}:" in msg
    assert "03-extra.typ does not exist" in msg


def test_missing_experiment_file(book):
    (book / "experiments" / "hello.py").unlink()
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'experiments/hello.py')}:" in msg


def test_unknown_symbol(book):
    edit(book, "llm_reference/errors.py:UserError",
         "llm_reference/errors.py:NoSuchThing")
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'NoSuchThing')}:" in msg
    assert "NoSuchThing" in msg


def test_unknown_module_file(book):
    edit(book, "llm_reference/errors.py:UserError", "llm_reference/nothere.py:X")
    assert "no file llm_reference/nothere.py" in error(book)


def test_long_quoted_line_in_roadmap_code(book, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "llm_reference", src / "llm_reference")
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "m.py").write_text("def f():\n    return '" + "x" * 90 + "'\n")
    edit(book, 'code = ["llm_reference/atomic.py:write_bytes"]',
         'code = ["pkg/m.py:f"]')
    with pytest.raises(BuildError, match=r"pkg/m.py:2: quoted line of f is 103"):
        roadmap.load(book, src)


def test_node_in_an_unknown_track(book):
    edit(book, 'tracks = { basic = "optional", full = "core" }',
         'tracks = { basic = "optional", ghost = "core" }')
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'ghost = ')}: node 'extra'" in msg
    assert "unknown track 'ghost' in tracks (known: basic, full)" in msg


def test_node_in_no_track(book):
    edit(book, 'tracks = { full = "optional" }\n', "")
    msg = error(book)
    header = line_of(book, "[[node]]", line_of(book, 'id = "later"') - 2)
    assert f"roadmap.toml:{header}:" in msg
    assert "'later' is in no track" in msg


def test_bad_depth_and_track_closure(book):
    original = (book / "roadmap.toml").read_text()
    edit(book, 'basic = "optional", full = "core"', 'basic = "maybe", full = "core"')
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'maybe')}:" in msg
    assert "tracks.basic = 'maybe'; use core or optional" in msg
    (book / "roadmap.toml").write_text(original)
    # basic would include 'later' but not 'write', which 'later' requires
    edit(book, 'atomically"\ntracks = { basic = "core", ', 'atomically"\ntracks = { ')
    edit(book, 'tracks = { full = "optional" }', "tracks = { basic = 'core' }")
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'tracks = { basic = ' + chr(39))}:" in msg
    assert "track 'basic' includes 'later' but not 'write', which it requires" in msg


def test_guidance_is_parsed_per_track():
    road = roadmap.load(FIXTURE, REPO)
    assert road.by_id["extra"].guidance == {
        "basic": ("skip", "an extra the basic track can come back to"),
        "full": ("read", "it is core for the full track")}


@pytest.mark.parametrize("old, new, key, says", [
    ('basic = "skip:', 'ghost = "skip:', "ghost = ",
     "guidance.ghost: unknown track 'ghost' (known: basic, full)"),
    ('full = "read: it', 'full = "devour: it', "devour",
     "guidance.full = 'devour: it is core for the full track'; write \"read: …\""),
])
def test_bad_guidance_names_file_and_line(book, old, new, key, says):
    edit(book, old, new)
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, key)}: node 'extra': {says}" in msg


def test_guidance_for_a_track_without_the_step(book):
    edit(book, 'tracks = { basic = "optional", full = "core" }',
         'tracks = { full = "core" }')
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'basic = ' + chr(34) + 'skip')}:" in msg
    assert "guidance.basic: the basic track leaves this step out" in msg


def test_tracks_agree_with_the_planner(book):
    original = (book / "roadmap.toml").read_text()
    edit(book, "[track.full]\n", "[track.fast]\n")
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, '[track.fast]')}: [track.fast]" in msg
    assert "has no track 'fast' (it has basic, full)" in msg
    (book / "roadmap.toml").write_text(original)
    edit(book, '[track.full]\nwho = "everyone else"\n', "")
    assert "the planner's track 'full' has no [track.full] table" in error(book)
    (book / "roadmap.toml").write_text(original)
    edit(book, 'who = "first-time readers"', 'who = 3')
    assert "[track.basic]: who = 3 is unknown or not a string" in error(book)


def test_unknown_track_option():
    road = roadmap.load(FIXTURE, REPO)
    roadmap.check_track(road, "basic")
    with pytest.raises(BuildError, match="unknown track 'expert'.*basic, full"):
        roadmap.check_track(road, "expert")


def test_invalid_toml_and_duplicates(book):
    edit(book, 'title = "Saying hello"', 'title = "Saying hello')
    assert re.search(r"roadmap\.toml:\d+: invalid TOML", error(book))
    shutil.copy(FIXTURE / "roadmap.toml", book / "roadmap.toml")
    edit(book, 'id = "extra"', 'id = "write"')
    header = line_of(book, "[[node]]", line_of(book, "chapters/03") - 4)
    assert f"roadmap.toml:{header}: duplicate node id 'write'" in error(book)


# DESIGN.md's roadmap table, copied: id | beginner | practitioner | researcher
DESIGN_TABLE = """
mental-model core core core
data core core core
tokenizer core core core
dataset core core core
embeddings core core core
attention core core core
model core core core
objective core core core
pretraining core core core
stability optional core core
efficiency - core core
scaling optional core core
distributed - optional core
evaluation core core core
generation core core core
finetuning optional core core
preference - optional core
quantization - optional core
serving - optional optional
reasoning-rl - optional core
moe - - core
release core core core
"""


@pytest.mark.slow
def test_real_roadmap_matches_the_design():
    """book/roadmap.toml: the design's 22 steps, in order, in the design's tracks,
    which are the planner's; every estimate spec is valid in every track."""
    road = roadmap.load(REPO / "book", REPO)
    rows = [line.split() for line in DESIGN_TABLE.strip().splitlines()]
    assert [n.id for n in road.nodes] == [row[0] for row in rows]
    assert list(road.tracks) == list(TRACKS) == ["beginner", "practitioner",
                                                 "researcher"]
    for column, track in enumerate(road.tracks.values(), start=1):
        assert track.depth == {row[0]: row[column] for row in rows
                               if row[column] != "-"}
        assert track.budgets == TRACKS[track.name].budgets
        assert track.who and track.prerequisites
    for node in road.nodes:
        for track in road.tracks:
            node_estimate(dict(node.estimate), track)


# --- inputs, lanes and order ---------------------------------------------------------


def test_input_from_unknown_id_names_its_line(book):
    edit(book, '{ from = "extra", artifact = "notes" }',
         '{ from = "nowhere", artifact = "notes" }')
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'nowhere')}:" in msg
    assert "node 'later': input from unknown id 'nowhere'" in msg


@pytest.mark.parametrize("entry", ['{ from = "write" }', '"write"',
                                   '{ from = "write", artifact = "" }',
                                   '{ from = "write", artifact = "x", kind = 1 }'])
def test_malformed_input(book, entry):
    edit(book, '{ from = "write", artifact = "files" }', entry)
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'inputs = [')}:" in msg
    assert "each input is { from = " in msg


def test_parent_named_twice(book):
    edit(book, 'inputs = [\n', 'requires = ["write"]\ninputs = [\n')
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'inputs = [')}:" in msg
    assert "'write' is named twice in requires and inputs" in msg


def test_cycle_through_inputs(book):
    edit(book, 'id = "intro"\n',
         'id = "intro"\ninputs = [{ from = "later", artifact = "loop" }]\n')
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'artifact = ' + chr(34) + 'loop')}:" in msg
    assert "cycle: intro -> later -> write -> intro" in msg


def test_parent_after_its_child_is_an_error(book):
    # 'extra' takes an input from 'later', which comes after it in the file
    edit(book, 'chapter = "chapters/03-extra.typ"\n',
         'chapter = "chapters/03-extra.typ"\nrequires = ["intro"]\n'
         'inputs = [{ from = "later", artifact = "x" }]\n')
    edit(book, 'requires = ["intro"]\ninputs = [{ from = "later"',
         'inputs = [{ from = "later"')
    edit(book, '  { from = "extra", artifact = "notes" },\n', "")
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'from = ' + chr(34) + 'later')}:" in msg
    assert "node 'extra' needs 'later', which comes later in the file" in msg


def test_unknown_lane_and_a_root_without_one(book):
    original = (book / "roadmap.toml").read_text()
    edit(book, 'lane = "training"', 'lane = "kitchen"')
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, 'kitchen')}:" in msg
    assert "lane = 'kitchen'; use one of data, model, training" in msg
    (book / "roadmap.toml").write_text(original)
    edit(book, 'lane = "data"\n', "")
    msg = error(book)
    assert f"roadmap.toml:{line_of(book, '[[node]]')}:" in msg
    assert "node 'intro' has no parent to take its lane from" in msg


# --- layout ------------------------------------------------------------------------

LANES = ["data", "model", "training"]
# a small graph with a diamond, an edge that skips rows, a bus and a same-lane jump
ORDER = ["a", "b", "c", "d", "e", "f", "g"]
LANE_OF = {"a": "data", "b": "data", "c": "model", "d": "training", "e": "model",
           "f": "data", "g": "training"}
EDGES = [("a", "b", "text"), ("a", "c", "text"), ("b", "d", "shards"),
         ("c", "d", None), ("a", "f", "manifest"), ("c", "e", "ckpt"),
         ("d", "g", "plan"), ("e", "g", "ckpt"), ("b", "g", "shards")]


def check_geometry(geo, edges) -> None:
    """No two boxes overlap; every edge runs from its source's bottom to its
    target's top, down or sideways only, without crossing any other box."""
    boxes = list(geo.boxes.values())
    for i, p in enumerate(boxes):
        assert 0 <= p.x and p.x + p.w <= geo.width + 1e-9
        assert 0 <= p.y and p.y + p.h <= geo.height + 1e-9
        for q in boxes[i + 1:]:
            apart = (p.x + p.w <= q.x or q.x + q.w <= p.x
                     or p.y + p.h <= q.y or q.y + q.h <= p.y)
            assert apart, (p, q)
    assert [(e.source, e.target, e.label) for e in geo.edges] == list(edges)
    for e in geo.edges:
        src, dst = geo.boxes[e.source], geo.boxes[e.target]
        assert e.points[0] == (e.points[0][0], src.y + src.h)
        assert src.x < e.points[0][0] < src.x + src.w
        assert e.points[-1] == (e.points[-1][0], dst.y)
        assert dst.x < e.points[-1][0] < dst.x + dst.w
        for (x0, y0), (x1, y1) in zip(e.points, e.points[1:]):
            assert y1 >= y0 and (x0 == x1 or y0 == y1)  # down or across
            for box in boxes:  # a segment never enters another box
                inside_x = min(x0, x1) < box.x + box.w and max(x0, x1) > box.x
                inside_y = min(y0, y1) < box.y + box.h and max(y0, y1) > box.y
                assert not (inside_x and inside_y), (e, box)


def test_layout_rows_lanes_and_routes():
    geo = layout(ORDER, LANE_OF, LANES, EDGES)
    # one column per lane, in the lanes' order; rows below every parent and below
    # the lane's previous node (so numbers grow down each lane)
    assert [lane.name for lane in geo.lanes] == LANES
    for n in ORDER:
        assert geo.boxes[n].x == geo.lanes[LANES.index(LANE_OF[n])].x
    for s, t, _ in EDGES:
        assert geo.rows[t] > geo.rows[s]
    assert geo.rows == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 2, "f": 2, "g": 3}
    check_geometry(geo, EDGES)
    # one port and one label per (source, artifact): 'a' sends text twice
    from_a = [e for e in geo.edges if e.source == "a" and e.label == "text"]
    assert from_a[0].points[0] == from_a[1].points[0]
    assert [e.label_at is not None for e in from_a] == [True, False]
    # the left half of a node's ports is labelled to the left of its stub
    ports = sorted((e.points[0][0], e.label_anchor) for e in geo.edges
                   if e.source == "a" and e.label_at)
    assert [side for _, side in ports] == ["end", "start"]


def test_layout_is_deterministic_and_drops_empty_lanes():
    first = layout(ORDER, LANE_OF, LANES + ["deployment"], EDGES)
    again = layout(list(ORDER), dict(LANE_OF), LANES + ["deployment"], list(EDGES))
    assert first == again
    assert [lane.name for lane in first.lanes] == LANES


def test_a_parent_after_its_child_is_refused():
    with pytest.raises(ValueError, match="'b' comes before its parent"):
        layout(["b", "a"], {"a": "data", "b": "data"}, LANES, [("a", "b", None)])


def test_critical_path_is_the_heaviest_chain():
    parents = {"b": ["a"], "c": ["a"], "d": ["b", "c"]}
    order = ["a", "b", "c", "d"]
    assert critical_path(order, parents, {"b": 1.0, "c": 5.0}) == ["a", "c", "d"]
    assert critical_path(order, parents, {"b": 5.0, "c": 1.0}) == ["a", "b", "d"]
    # no weights: the longest chain, the first parent on a tie
    assert critical_path(order, parents, {}) == ["a", "b", "d"]


def test_roadmap_graph_is_plain_data():
    road = roadmap.load(FIXTURE, REPO)
    graph = roadmap_graph(road, "full")
    assert json.loads(json.dumps(graph)) == graph  # nothing but JSON types
    assert [n["id"] for n in graph["nodes"]] == ["intro", "write", "extra", "later"]
    assert [n["number"] for n in graph["nodes"]] == [1, 2, 3, 4]
    later = next(n for n in graph["nodes"] if n["id"] == "later")
    assert later["depth"] == "optional" and later["pending"]
    assert later["depths"] == {"basic": None, "full": "optional"}
    edges = {(e["source"], e["target"]): e for e in graph["edges"]}
    assert set(edges) == {("intro", "write"), ("intro", "extra"),
                          ("write", "later"), ("extra", "later")}
    assert edges[("write", "later")]["label"] == "files"
    # the critical path runs through the heaviest core steps: write (3e15 FLOPs),
    # not 'later', which is optional in this track
    assert graph["critical_path"] == ["intro", "write"]
    assert not later["critical"]
    assert edges[("intro", "write")]["critical"]
    assert not edges[("intro", "extra")]["critical"]
    assert graph["nodes"][1]["seconds"] > 0
    # a track's edition holds its nodes only; no track: no times, no path
    basic = roadmap_graph(road, "basic")
    assert [n["id"] for n in basic["nodes"]] == ["intro", "write", "extra"]
    every = roadmap_graph(road)
    assert every["critical_path"] == [] and every["nodes"][0]["seconds"] is None
    assert roadmap_graph(road, "full") == graph


def test_real_roadmap_lays_out_cleanly():
    road = roadmap.load(REPO / "book", REPO)
    for track in (None, *road.tracks):
        graph = roadmap_graph(road, track)
        geo_edges = [(e["source"], e["target"], e["label"]) for e in graph["edges"]]
        nodes = road.nodes_in(track)
        geo = layout([n.id for n in nodes], {n.id: n.lane for n in nodes},
                     roadmap.LANES, geo_edges)
        check_geometry(geo, geo_edges)
        # every step has a parent except the first; every artifact is named
        assert all(n.requires for n in nodes[1:])
        numbers = {n["id"]: n["number"] for n in graph["nodes"]}
        for lane in graph["lanes"]:  # reading order down each lane
            column = sorted((n["y"], numbers[n["id"]]) for n in graph["nodes"]
                            if n["lane"] == lane["name"])
            assert [num for _, num in column] == sorted(num for _, num in column)


def test_estimates_are_cached_by_the_estimator_sources(book, tmp_path):
    """node_estimate runs once per (spec, track); the cache is dropped when the
    estimator's source changes."""
    cache = tmp_path / "estimates.json"
    first = roadmap.load(book, REPO, estimate_cache=cache)
    assert first.estimates[("intro", "basic")]["hardware"] == "laptop-cpu"
    assert ("later", "basic") not in first.estimates  # not in that track
    calls = []

    def counting_estimator():
        module = roadmap.load_module("estimates.py", book, "estimates")
        real = module.node_estimate
        module.node_estimate = lambda spec, track: calls.append(track) or real(
            spec, track)
        return module

    again = roadmap.load(book, REPO, estimator=counting_estimator(),
                         estimate_cache=cache)
    assert calls == [] and again.estimates == first.estimates
    (book / "estimates.py").write_text((book / "estimates.py").read_text()
                                       + "\n# changed\n")
    roadmap.load(book, REPO, estimator=counting_estimator(), estimate_cache=cache)
    assert len(calls) == len(first.estimates)


def test_bad_estimate_spec_names_the_roadmap_line(book):
    edit(book, 'estimate = { kind = "flops", flops = 5.0e9 }',
         'estimate = { kind = "flop", flops = 5.0e9 }')
    msg = error(book)
    line = line_of(book, 'kind = "flop"')
    assert f"roadmap.toml:{line}:" in msg
    assert "unknown estimate kind 'flop'" in msg


def test_checks_module_gives_each_node_its_command(book: Path):
    (book / "checks.py").write_text(
        "NODES = {'intro': None, 'write': None, 'later': None}\n"
        "def command_for(node):\n"
        "    return f'python -m llm_reference check {node} --impl my_{node}'\n")
    edit(book, "[book]\n", "[book]\nchecks = \"checks.py\"\n")
    road = roadmap.load(book, REPO)
    assert road.by_id["write"].check_command == (
        "python -m llm_reference check write --impl my_write")
    assert road.by_id["write"].check_starter is None  # the module has no starters


def test_checks_module_gives_each_node_its_starter_file(book: Path):
    (book / "checks.py").write_text(
        "NODES = {'intro': None, 'write': None, 'later': None}\n"
        "def command_for(node):\n"
        "    return f'python -m llm_reference check {node} --impl my_{node}'\n"
        "def starter_for(node):\n"
        f"    return f'{book}/starters/my_{{node}}.py'\n")
    (book / "starters").mkdir()
    (book / "starters" / "my_write.py").write_text("def write():\n    raise "
                                                   "NotImplementedError\n")
    edit(book, "[book]\n", "[book]\nchecks = \"checks.py\"\n")
    road = roadmap.load(book, REPO)
    assert road.by_id["write"].check_starter == book / "starters" / "my_write.py"
    assert road.by_id["intro"].check_starter is None  # its file does not exist


def test_check_without_reader_checks_is_an_error(book: Path):
    (book / "checks.py").write_text("NODES = {'intro': None}\n"
                                    "def command_for(node):\n    return node\n")
    edit(book, "[book]\n", "[book]\nchecks = \"checks.py\"\n")
    message = error(book)
    line = line_of(book, 'check = "write"')
    assert f"roadmap.toml:{line}:" in message
    assert "has no checks for 'write'" in message


def test_export_rows_describe_each_tracks_first_budget(book: Path):
    from bookbuilder.pipeline import export_rows

    assert export_rows(roadmap.load(book, REPO), ["basic"]) == []  # no [book] export
    (book / "exporter.py").write_text(
        "def describe(track, budget):\n"
        "    return {'plan': {'budget': budget}, 'commands': ['make test'],\n"
        "            'files': ['README.md']}\n")
    edit(book, "[book]\n", "[book]\nexport = \"exporter.py\"\n")
    road = roadmap.load(book, REPO)
    (row,) = export_rows(road, ["basic"])
    budget = road.tracks["basic"].budgets[0]
    assert row["plan"] == {"budget": budget} and row["files"] == ["README.md"]
    assert row["command"] == (f"python -m scaffold new --track basic --budget "
                              f"{budget} -o my-llm")


def test_audit_entries_become_their_exact_command(book: Path):
    edit(book, 'automated_checks = ["python -m llm_reference check intro --impl '
               'mine:hello"]',
         'automated_checks = [\n  "plain prose",\n  "audit:dataset.shard-integrity",\n'
         '  "audit:model.no-pickle:run,code",\n]')
    checks = roadmap.load(book, REPO).by_id["intro"].automated_checks
    assert checks[0] == "plain prose"
    assert checks[1].startswith("`python -m llm_reference audit --data data/stdlib "
                                "--only dataset.shard-integrity` (")
    assert checks[2].startswith("`python -m llm_reference audit --run runs/tiny "
                                "--code . --only model.no-pickle`")


@pytest.mark.parametrize("entry, says", [
    ("audit:dataset.no-such-check", "known ids: data.licenses-declared"),
    ("audit:model.no-pickle:eval", "its targets: run, release, code"),
])
def test_unknown_audit_id_or_target_names_file_and_line(book: Path, entry, says):
    edit(book, 'automated_checks = ["python -m llm_reference check intro --impl '
               'mine:hello"]', f'automated_checks = [\n  "ok",\n  "{entry}",\n]')
    message = error(book)
    assert f"roadmap.toml:{line_of(book, entry)}:" in message
    assert says in message


def test_real_roadmap_names_only_audit_checks_that_exist():
    text = (REPO / "book" / "roadmap.toml").read_text()
    assert text.count('"audit:') >= 10
    for n in roadmap.load(REPO / "book", REPO).nodes:
        assert not any(c.startswith("audit:") for c in n.automated_checks)
