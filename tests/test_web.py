"""The web edition of the fixture book: pages, bytes, and behaviour in a real browser.

The browser tests drive headless Chromium (bookbuilder/browser.py). Without it they
are skipped with the reason, except under CI=true, where a missing browser fails:
.ci/run installs it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from bookbuilder.browser import Browser, find_chromium
from bookbuilder.pipeline import Options, Report, build
from bookbuilder.web import screenshots

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "book"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Report:
    out = tmp_path_factory.mktemp("dist")
    return build(Options(book_dir=FIXTURE, out=out, progress=False, html=True))


@pytest.fixture(scope="module")
def web(built) -> Path:
    return built.web_pages[0].parent


@pytest.fixture(scope="module")
def browser():
    path = find_chromium()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no Chromium on PATH: .ci/run installs it "
                        "(apt-get install chromium)")
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    with Browser(path) as b:
        yield b


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.parent.name != "screenshots"}


# --- the files -------------------------------------------------------------------


def test_one_page_per_chapter_and_the_roadmap(web):
    pages = sorted(p.name for p in web.glob("*.html"))
    assert pages == ["extra.html", "index.html", "intro.html", "write.html"]
    assert {"web.css", "roadmap.js", "tracks.css", "pygments.css"} <= set(
        p.name for p in web.iterdir())
    assert (web / "code" / "hello.py").read_bytes() == (
        FIXTURE / "experiments" / "hello.py").read_bytes()
    assert (web / "code" / "hello.ipynb").is_file()


def test_chapters_have_mathml_highlighted_code_and_figures_with_alt_text(web):
    intro = (web / "intro.html").read_text()
    assert '<math display="block">' in intro
    assert "<h1>Saying hello</h1>" in intro
    write = (web / "write.html").read_text()
    assert re.search(r'<code data-lang="python"><span class="ln" data-n="\d+">'
                     r'<span style="color: #', write)
    # lines are numbered as the quoted file's, from the listing head's first line
    head = re.search(r'<code>llm_reference/atomic\.py:(\d+)–(\d+)</code>.*?<pre>'
                     r'(.*?)</pre>', write, re.S)
    first, last, listing = int(head.group(1)), int(head.group(2)), head.group(3)
    numbers = [int(n) for n in re.findall(r'class="ln" data-n="(\d+)"', listing)]
    assert numbers == list(range(first, last + 1))
    img = re.search(r'<img src="([^"]+)" alt="([^"]*)"', write)
    assert img and img.group(2) == "A blue rectangle, drawn by the experiment."
    assert (web / img.group(1)).read_bytes().startswith(b"<svg")
    # a chapter links to another chapter's page, not to a PDF label
    assert '<a href="write.html">Writing files atomically</a>' in intro


def test_roadmap_page_has_every_node_and_its_card(web, built):
    index = (web / "index.html").read_text()
    for node in ("intro", "write", "extra", "later"):
        assert f'id="card-{node}"' in index
        assert f'aria-controls="body-{node}"' in index
    assert "python -m llm_reference check intro" in index
    assert 'href="code/hello.ipynb"' in index
    assert "http" not in re.sub(r'<a href="https?://[^"]+"', "", index)  # no CDN


def test_pages_are_deterministic(built, web, tmp_path):
    """A second build (warm cache, another folder) writes the same bytes."""
    shutil.copytree(web.parent / ".cache", tmp_path / ".cache")
    again = build(Options(book_dir=FIXTURE, out=tmp_path, progress=False, html=True))
    assert files(again.web_pages[0].parent) == files(web)


def test_html_with_a_track_is_refused(capsys, tmp_path):
    from bookbuilder.__main__ import main
    code = main(["--book-dir", str(FIXTURE), "--out", str(tmp_path), "--html",
                 "--track", "basic"])
    assert code == 2
    assert "leave out --track and --only" in capsys.readouterr().err
    assert not (tmp_path / "web").exists()


# --- in the browser ----------------------------------------------------------------


def ids_in(path: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', path.read_text()))


def test_every_internal_link_resolves_and_no_console_errors(web, browser):
    for page in sorted(web.glob("*.html")):
        browser.errors.clear()
        browser.goto(page.as_uri())
        urls = browser.evaluate(
            "Array.from(document.querySelectorAll('a[href], img[src], link[href],"
            " script[src]')).map(e => e.href || e.src)")
        assert browser.errors == [], page.name
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme != "file":
                continue
            target = Path(unquote(parts.path))
            assert target.is_file(), f"{page.name} links to missing {url}"
            if parts.fragment:
                assert parts.fragment in ids_in(target), f"{page.name}: {url}"


def expanded(browser, node: str) -> bool:
    return browser.evaluate(
        f"(() => {{ const n = document.getElementById('card-{node}');"
        " const open = n.querySelector('button').getAttribute('aria-expanded');"
        " const card = n.querySelector('.card');"
        " if ((open === 'true') !== (card.offsetParent !== null))"
        "   throw new Error('aria-expanded and the card disagree');"
        " return open === 'true'; })()")


def test_each_node_expands_and_collapses_by_click_and_keyboard(web, browser):
    browser.goto((web / "index.html").as_uri())
    nodes = browser.evaluate(
        "Array.from(document.querySelectorAll('.node')).map(n => n.id.slice(5))")
    assert sorted(nodes) == ["extra", "intro", "later", "write"]
    for node in nodes:
        assert not expanded(browser, node)
        browser.click(f"#card-{node} .node-button")
        assert expanded(browser, node)
        browser.click(f"#card-{node} .node-button")
        assert not expanded(browser, node)
    browser.evaluate("document.querySelector('#card-intro .node-button').focus()")
    browser.press("Enter")
    assert expanded(browser, "intro")
    browser.press(" ")
    assert not expanded(browser, "intro")
    browser.press("Enter")
    browser.press("Escape")
    assert not expanded(browser, "intro")
    browser.press("ArrowDown")  # the next step down the graph gets the focus
    focused = browser.evaluate("document.activeElement.closest('.node').id")
    assert focused in ("card-write", "card-extra")
    assert browser.errors == []


def visible_text(browser, selector: str) -> str:
    return browser.evaluate(
        f"Array.from(document.querySelectorAll({selector!r}))"
        ".filter(e => e.offsetParent !== null).map(e => e.innerText).join(' | ')")


def test_track_selector_marks_depths_and_changes_estimates(web, browser):
    browser.goto((web / "index.html").as_uri())
    browser.click("#card-write .node-button")
    shown = {}
    for track in ("basic", "full"):
        browser.click(f"input[name=track][value={track}]")
        shown[track] = (visible_text(browser, "#card-write .estimate"),
                        visible_text(browser, "#card-write .node-est"),
                        visible_text(browser, ".track-summary p"))
        depth = browser.evaluate("document.getElementById('card-later').dataset.depth")
        assert depth == {"basic": "absent", "full": "optional"}[track]
    assert "laptop-cpu" in shown["basic"][0] and "1xA100" not in shown["basic"][0]
    assert "1xA100" in shown["full"][0] and "laptop-cpu" not in shown["full"][0]
    assert shown["basic"][1] != shown["full"][1]   # the node's badge: time and cost
    assert shown["basic"][2] != shown["full"][2]   # the track's summary
    browser.click("input[name=track][value=all]")
    assert "laptop-cpu" in visible_text(browser, "#card-write .estimate")
    assert browser.errors == []


def test_readable_at_phone_width(web, browser):
    browser.viewport(390, 844)
    try:
        for page in ("index.html", "write.html"):
            browser.goto((web / page).as_uri())
            width = browser.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{page} is {width}px wide at a 390px viewport"
    finally:
        browser.viewport(1280, 900)


def test_screenshots(web, browser):
    shots = screenshots(web)
    assert [p.name for p in shots] == ["roadmap.png", "chapter.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in shots)
