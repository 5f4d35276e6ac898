"""What differs between the track editions, on the real roadmap: references to
steps an edition leaves out, the reading guide, the planner's run per track."""

from __future__ import annotations

from pathlib import Path

import pytest

from bookbuilder import roadmap
from bookbuilder.errors import BuildError
from bookbuilder.render import Book, Chapter, Variant
from llm_reference.plan import TRACKS, make_plan

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Book:
    road = roadmap.load(REPO / "book", REPO)
    return Book(road, {}, REPO / "book" / "templates", tmp_path_factory.mktemp("b"))


def chapter(book: Book, node: str, track: str | None) -> Chapter:
    variant = Variant(track or "all", track)
    linkable = {n.id for n in book.roadmap.nodes_in(track)}
    return Chapter(book, book.roadmap.by_id[node], variant, linkable)


def test_a_track_edition_cannot_name_a_step_it_leaves_out(book):
    beginner = chapter(book, "pretraining", "beginner")
    with pytest.raises(BuildError, match=r"step\('distributed'\): the beginner "
                       r"edition leaves out step 13 \(DDP"):
        beginner.step("distributed")
    assert not beginner.has("distributed") and beginner.see("distributed") == ""
    assert beginner.has("scaling") and "step 12" in beginner.see("scaling")
    full = chapter(book, "pretraining", None)
    assert full.has("distributed") and "step 13" in full.step("distributed")


def test_every_node_has_guidance_for_each_track_that_includes_it(book):
    for node in book.roadmap.nodes:
        tracks = {t for t, tr in book.roadmap.tracks.items() if node.id in tr.depth}
        assert set(node.guidance) == tracks, node.id


def test_reading_guide_shows_the_editions_tracks(book):
    full = chapter(book, "stability", None).opening()
    assert full.count("verdict:") == 3
    assert "step 9" in full  # requires: pretraining
    only = chapter(book, "stability", "beginner").opening()
    assert only.count("verdict:") == 1 and '"skip"' in only


@pytest.mark.parametrize("track", ["practitioner", "researcher"])
def test_planned_model_comes_from_the_planner(book, track):
    text = chapter(book, "model", track).planned(track)
    plan = make_plan(TRACKS[track].budgets[0], track)
    assert f"[{plan.model['n_layer']}]" in text
    assert dict(plan.summary())["model"].split(":")[0] in text.replace("\\", "")
    with pytest.raises(BuildError, match="no such track"):
        chapter(book, "model", track).planned("ghost")


@pytest.mark.parametrize("track", ["practitioner", "researcher"])
def test_planned_views_show_the_planners_run(book, track):
    plan = make_plan(TRACKS[track].budgets[0], track)
    summary = dict(plan.summary())
    text = chapter(book, "pretraining", track).planned(track, "training")
    text = text.replace("\\", "")  # Typst's escapes
    assert f"{plan.train['lr']:g}" in text and f"{plan.train['min_lr']:g}" in text
    assert summary["steps"] in text
    text = chapter(book, "efficiency", track).planned(track, "efficiency")
    text = text.replace("\\", "")
    assert f"[assumed MFU], [{plan.mfu:.0%}]" in text
    assert f"{plan.hardware.peak_tflops:g} TFLOP/s" in text
    text = chapter(book, "distributed", track).planned(track, "layout")
    assert {"single": "one process", "ddp": "DDP", "fsdp": "FSDP2"}[
        plan.parallelism] in text
    assert ("torchrun" in text) == (plan.budget.count > 1)
    with pytest.raises(BuildError, match="choose one of"):
        chapter(book, "model", track).planned(track, "ghost")
