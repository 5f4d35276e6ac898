"""The fixture book, built once per module: PDF links, outline, attachments, tracks,
reproducible bytes, and Typst errors mapped back to chapter lines."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pypdf
import pytest

from bookbuilder import roadmap
from bookbuilder.errors import BuildError
from bookbuilder.pipeline import Options, Report, build

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "book"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Report:
    out = tmp_path_factory.mktemp("dist")
    return build(Options(book_dir=FIXTURE, out=out, progress=False))


@pytest.fixture(scope="module")
def road() -> roadmap.Roadmap:
    return roadmap.load(FIXTURE, REPO)


def outline_titles(reader: pypdf.PdfReader) -> dict[str, int]:
    """Every bookmark (nested ones too): title -> page index."""
    found: dict[str, int] = {}

    def walk(items):
        for item in items:
            if isinstance(item, list):
                walk(item)
            else:
                found[item.title] = reader.get_destination_page_number(item)

    walk(reader.outline)
    return found


def node_links(reader: pypdf.PdfReader, page: int, prefix: str = "node-"
               ) -> dict[str, int]:
    """Links on `page` to a `node-…` (or `prefix…`) label: node id -> destination
    page index."""
    named = reader.named_destinations
    links = {}
    for annot in reader.pages[page].get("/Annots") or []:
        annot = annot.get_object()
        dest = annot.get("/Dest")
        if annot.get("/Subtype") == "/Link" and isinstance(dest, str) \
                and dest.startswith(prefix):
            links[dest.removeprefix(prefix)] = reader.get_destination_page_number(
                named[dest])
    return links


def roadmap_page(reader: pypdf.PdfReader) -> int:
    return reader.get_destination_page_number(reader.named_destinations["roadmap"])


def test_outputs_exist(built):
    assert set(built.pdfs) == {"all", "basic", "full"}
    assert [p.name for p in built.pdfs.values()] == [
        "llm-from-scratch.pdf", "llm-from-scratch-basic.pdf",
        "llm-from-scratch-full.pdf"]
    manifest = json.loads(built.manifest.read_text())
    assert manifest["versions"]["typst"].startswith("Typst 0.15")
    assert set(manifest["experiments"]) == {"hello", "atomic_demo"}
    assert all(e["seconds"] > 0 for e in manifest["experiments"].values())
    assert "roadmap.toml" in manifest["inputs"]
    assert "llm_reference/atomic.py" in manifest["inputs"]
    assert "chapters/01-intro.typ" in manifest["inputs"]
    assert set(manifest["outputs"]) == {p.name for p in built.pdfs.values()}


def test_every_roadmap_node_opens_its_card_then_its_chapter(built, road):
    """A written step's node opens its card, the page before its chapter, which
    links to the chapter and back; a step in preparation opens its entry."""
    reader = pypdf.PdfReader(built.pdfs["all"])
    pages = outline_titles(reader)
    start = roadmap_page(reader)
    cards = node_links(reader, start, "card-")
    links = node_links(reader, start)
    assert set(cards) == {n.id for n in road.nodes if n.chapter}
    assert set(links) == {n.id for n in road.nodes if not n.chapter}
    for node in road.nodes:
        if not node.chapter:
            assert links[node.id] == pages[node.title], node.id
            continue
        card = cards[node.id]
        assert card == pages[node.title] - 1, node.id
        text = reader.pages[card].extract_text()
        assert "read the chapter" in text and "back to the roadmap" in text
        assert node_links(reader, card)[node.id] == pages[node.title]
        dests = [a.get_object().get("/Dest")
                 for a in reader.pages[card].get("/Annots") or []]
        assert "roadmap" in dests
        # the chapter opening's mini-map links every step like the roadmap
        assert set(node_links(reader, pages[node.title], "card-")) == set(cards)
    # written chapters each start on their own page
    written = [pages[n.title] for n in road.nodes if n.chapter]
    assert len(set(written)) == len(written)
    # every chapter links back to the roadmap
    back = reader.named_destinations["roadmap"]
    for node in road.nodes:
        if node.chapter:
            dests = [a.get_object().get("/Dest")
                     for a in reader.pages[pages[node.title]].get("/Annots") or []]
            assert "roadmap" in dests, node.id
    assert back is not None


def test_per_track_pdfs_hold_exactly_their_nodes(built, road):
    titles = {n.title for n in road.nodes}
    for track in ("basic", "full"):
        reader = pypdf.PdfReader(built.pdfs[track])
        expected = {n.id for n in road.nodes_in(track)}
        named = {d.removeprefix("node-") for d in reader.named_destinations
                 if d.startswith("node-")}
        assert named == expected
        page = roadmap_page(reader)
        linked = {**node_links(reader, page), **node_links(reader, page, "card-")}
        assert set(linked) == expected
        in_outline = titles & set(outline_titles(reader))
        assert in_outline == {road.by_id[i].title for i in expected}
    basic_text = "".join(p.extract_text() for p in
                         pypdf.PdfReader(built.pdfs["basic"]).pages)
    assert "A step still in preparation" not in basic_text
    assert "optional" in basic_text  # 'extra' is optional in the basic track


def test_attachments_are_the_sources_and_executed_notebooks(built, road):
    out = built.pdfs["all"].parent
    reader = pypdf.PdfReader(built.pdfs["all"])
    attachments = {name: data[0] for name, data in reader.attachments.items()}
    assert set(attachments) == {"code/intro/hello.py", "code/intro/hello.ipynb",
                                "code/write/atomic_demo.py",
                                "code/write/atomic_demo.ipynb",
                                "code/llm-from-scratch-src.tar.gz"}
    archive = attachments["code/llm-from-scratch-src.tar.gz"]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:  # the code, in the book
        names = set(tar.getnames())
    assert {"llm-from-scratch/pyproject.toml",
            "llm-from-scratch/llm_reference/model.py"} <= names
    assert (out / "code" / "llm-from-scratch-src.tar.gz").read_bytes() == archive
    for name, node in (("hello", "intro"), ("atomic_demo", "write")):
        source = (FIXTURE / "experiments" / f"{name}.py").read_bytes()
        assert attachments[f"code/{node}/{name}.py"] == source
        assert (out / "code" / node / f"{name}.py").read_bytes() == source
        notebook = built.results[name].notebook.read_bytes()
        assert attachments[f"code/{node}/{name}.ipynb"] == notebook
        assert (out / "code" / node / f"{name}.ipynb").read_bytes() == notebook
        nb = json.loads(notebook)
        assert nb["metadata"]["kernelspec"]["name"] == "python3"
        for cell in nb["cells"]:
            assert "execution" not in cell["metadata"]  # no timestamps
    basic = pypdf.PdfReader(built.pdfs["basic"])
    assert set(basic.attachments) == set(attachments)  # both nodes are in basic


def test_outline_and_metadata(built, road):
    reader = pypdf.PdfReader(built.pdfs["all"])
    titles = outline_titles(reader)
    assert {n.title for n in road.nodes} <= set(titles)
    assert "The roadmap" in titles and "References" in titles
    meta = reader.metadata
    assert meta.title == "Fixture Book" and meta.author == "The test suite"
    assert "fixture" in meta["/Keywords"]
    assert "/CreationDate" not in meta and "/ModDate" not in meta
    track = pypdf.PdfReader(built.pdfs["basic"]).metadata
    assert track.title == "Fixture Book — basic track"


def test_chapter_shows_executed_output_and_quoted_code(built):
    reader = pypdf.PdfReader(built.pdfs["all"])
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert "15 words, first: one" in text  # the experiment's real stdout
    assert "llm_reference/errors.py:" in text and "class UserError(Exception):" in text
    assert "a*b_c #x <y> @z" in text  # escaped text shows verbatim
    # the estimate card (from the fixture's estimates.py), the hardware table (its
    # plan.py) and the tracks' prerequisites (its roadmap)
    assert "Estimate" in text and "Wall time" in text and "laptop-cpu" in text
    assert "Appendix C: Hardware and cost" in text and "Peak TFLOP/s" in text
    assert "full: the basic track." in text


def test_build_is_reproducible(built, tmp_path):
    """A second cold build (experiments executed again) gives the same bytes."""
    again = build(Options(book_dir=FIXTURE, out=tmp_path / "dist", progress=False))
    assert not any(r.cache_hit for r in again.results.values())
    for name, path in built.pdfs.items():
        assert again.pdfs[name].read_bytes() == path.read_bytes(), name


def _copy_with_cache(built: Report, tmp_path: Path) -> tuple[Path, Path]:
    book = tmp_path / "book"
    shutil.copytree(FIXTURE, book)
    out = tmp_path / "dist"
    shutil.copytree(built.pdfs["all"].parent / ".cache", out / ".cache")
    return book, out


def test_typst_error_is_reported_at_the_chapter_line(built, tmp_path):
    book, out = _copy_with_cache(built, tmp_path)
    chapter = book / "chapters" / "03-extra.typ"
    lines = chapter.read_text().splitlines()
    lines.insert(4, "A line with a #no-such-function(1) call.")  # becomes line 5
    chapter.write_text("\n".join(lines) + "\n")
    with pytest.raises(BuildError) as e:
        build(Options(book_dir=book, out=out, no_exec=True, progress=False))
    first = str(e.value).splitlines()[0]
    assert "03-extra.typ:5: typst error: unknown variable: no-such-function" in first


def test_template_and_helper_errors_are_reported_at_the_chapter_line(built, tmp_path):
    book, out = _copy_with_cache(built, tmp_path)
    chapter = book / "chapters" / "02-write.typ"
    text = chapter.read_text().replace("<< estimate() >>", "<< code('llm_reference/"
                                       "errors.py:Nope') >>")
    chapter.write_text(text)
    line = text.splitlines().index("<< code('llm_reference/errors.py:Nope') >>") + 1
    with pytest.raises(BuildError, match=rf"02-write\.typ:{line}: code reference "):
        build(Options(book_dir=book, out=out, no_exec=True, progress=False))


def test_an_edition_never_refers_to_a_step_it_leaves_out(built, tmp_path):
    """'later' is not in the basic track: the fixture's reference to it sits in a
    `has("later")` block, and the same reference outside it fails at its line."""
    reader = pypdf.PdfReader(built.pdfs["basic"])
    text = "".join(p.extract_text() for p in reader.pages)
    assert "What follows comes in" not in text
    full = "".join(p.extract_text() for p in pypdf.PdfReader(built.pdfs["all"]).pages)
    assert "What follows comes in step 4" in full
    book, out = _copy_with_cache(built, tmp_path)
    chapter = book / "chapters" / "02-write.typ"
    text = chapter.read_text().replace('<% if has("later") %>\n', "")
    chapter.write_text(text.replace("<% endif %>\n", ""))
    line = chapter.read_text().splitlines().index(
        'What follows comes in << step("later") >>.') + 1
    with pytest.raises(BuildError, match=rf"02-write\.typ:{line}: step\('later'\): "
                       r"the basic edition leaves out step 4"):
        build(Options(book_dir=book, out=out, track="basic", no_exec=True,
                      progress=False))
    build(Options(book_dir=book, out=out, track="full", no_exec=True, progress=False))


def test_reading_guide_opens_each_chapter_for_the_editions_tracks(built):
    def page_of(name: str, title: str) -> str:
        reader = pypdf.PdfReader(built.pdfs[name])
        return next(p.extract_text() for p in reader.pages
                    if title in p.extract_text() and "Builds on" in p.extract_text())
    full = page_of("all", "An optional extra")
    assert "Builds on step 1 (Saying hello)" in full
    assert "an extra the basic track can come back to" in full
    assert "it is core for the full track" in full
    basic = page_of("basic", "An optional extra")
    assert "an extra the basic track can come back to" in basic
    assert "it is core for the full track" not in basic


def test_text_edit_reexecutes_nothing_and_only_preview(built, tmp_path):
    book, out = _copy_with_cache(built, tmp_path)
    chapter = book / "chapters" / "01-intro.typ"
    chapter.write_text(chapter.read_text().replace("prints a line", "prints one line"))
    report = build(Options(book_dir=book, out=out, no_exec=True, progress=False))
    assert all(r.cache_hit for r in report.results.values())
    preview = build(Options(book_dir=book, out=out, only="write", no_exec=True,
                            progress=False))
    assert [p.name for p in preview.pdfs.values()] == ["preview-write.pdf"]
    assert set(preview.results) == {"atomic_demo"}
    reader = pypdf.PdfReader(preview.pdfs["only-write"])
    named = {d for d in reader.named_destinations if d.startswith("node-")}
    assert named == {"node-write"}


def test_an_unchanged_rebuild_compiles_nothing_and_keeps_every_byte(built, tmp_path):
    out = tmp_path / "dist"
    shutil.copytree(built.pdfs["all"].parent, out)
    (out / "llm-from-scratch.pdf").unlink()  # restored from the compile cache
    again = build(Options(book_dir=FIXTURE, out=out, no_exec=True, progress=False))
    assert again.compiled == []
    assert sorted(again.pages) == ["all", "basic", "full", "web/extra", "web/intro",
                                   "web/write"]
    for name, path in built.pdfs.items():
        assert again.pdfs[name].read_bytes() == path.read_bytes(), name
    for page in built.web_pages:
        assert (out / "web" / page.name).read_bytes() == page.read_bytes(), page.name


def test_a_chapter_edit_recompiles_only_the_pages_that_show_it(built, tmp_path):
    book, out = _copy_with_cache(built, tmp_path)
    first = build(Options(book_dir=book, out=out, no_exec=True, progress=False))
    assert first.compiled == first.pages  # another book folder: other line maps
    chapter = book / "chapters" / "03-extra.typ"
    chapter.write_text(chapter.read_text().replace("has no experiment",
                                                   "runs no experiment"))
    edited = build(Options(book_dir=book, out=out, no_exec=True, progress=False))
    assert edited.compiled == ["all", "basic", "full", "web/extra"]
    assert "runs no experiment" in (out / "web" / "extra.html").read_text()
    fresh = tmp_path / "fresh"  # no compile cache: every page compiled
    shutil.copytree(out / ".cache" / "experiments", fresh / ".cache" / "experiments")
    cold = build(Options(book_dir=book, out=fresh, no_exec=True, progress=False))
    assert cold.compiled == cold.pages
    for name, path in cold.pdfs.items():
        assert edited.pdfs[name].read_bytes() == path.read_bytes(), name
    templates = tmp_path / "templates"  # a shared file of the Typst root
    shutil.copytree(REPO / "book" / "templates", templates)
    with (templates / "style.typ").open("a") as f:
        f.write("// an edit every page imports\n")
    styled = build(Options(book_dir=book, out=out, templates=templates, no_exec=True,
                           progress=False))
    assert styled.compiled == styled.pages


def test_command_line_exit_codes(built, tmp_path):
    book, out = _copy_with_cache(built, tmp_path)
    cmd = [sys.executable, str(REPO / "build.py"), "--book-dir", str(book), "--out",
           str(out), "--no-exec"]
    ok = subprocess.run(cmd + ["--track", "basic"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "llm-from-scratch-basic.pdf" in ok.stdout
    bad = subprocess.run(cmd + ["--track", "expert"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: unknown track 'expert'")
    assert "Traceback" not in bad.stderr
