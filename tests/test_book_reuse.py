"""Compiles reused when their inputs did not change (reuse.py), on a tiny Typst root."""

from pathlib import Path

import pytest
import typst

from bookbuilder import pdf, reuse
from bookbuilder.errors import BuildError


def _root(tmp_path: Path) -> tuple[Path, list[reuse.Page], pdf.SourceMap]:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "web").mkdir()
    (root / "style.typ").write_text("#let hello(who) = [Hello, #who!]\n")
    (root / "web" / "style.typ").write_text("#let shout(x) = upper(x)\n")
    (root / "a" / "main.typ").write_text('#import "/style.typ": *\n#hello("A")\n')
    (root / "web" / "b.typ").write_text('#import "/web/style.typ": *\n'
                                        '#shout("b")\n')
    sources = pdf.SourceMap(root)
    pages = [reuse.Page("a", root / "a" / "main.typ", [(root / "a.typ", 1)] * 2),
             reuse.Page("web/b", root / "web" / "b.typ", [(root / "b.typ", 1)] * 2,
                        format="html")]
    return root, pages, sources


def _fresh(page: reuse.Page, root: Path) -> bytes:
    return typst.compile(str(page.main), root=str(root), font_paths=[],
                         ignore_system_fonts=True, timestamp=0, format=page.format)


def test_generated_pages_are_told_from_shared_files():
    assert reuse.is_page("all/main.typ") and reuse.is_page("only-x/main.typ")
    assert reuse.is_page("web/attention.typ")
    for shared in ("style.typ", "tracks.typ", "web/style.typ", "assets/e/f.svg",
                   "code/n/main.typ", "references.yml"):
        assert not reuse.is_page(shared), shared


def test_root_digest_covers_shared_files_not_pages(tmp_path):
    root, pages, _ = _root(tmp_path)
    before = reuse.root_digest(root)
    pages[0].main.write_text("#lorem(3)\n")
    (root / "only-z").mkdir()
    (root / "only-z" / "main.typ").write_text("a preview's page\n")
    assert reuse.root_digest(root) == before
    (root / "assets").mkdir()
    (root / "assets" / "fig.svg").write_text("<svg/>")
    assert reuse.root_digest(root) != before


def test_unchanged_pages_are_reused_and_edited_ones_recompiled(tmp_path):
    root, pages, sources = _root(tmp_path)
    cache = reuse.Cache(tmp_path / "cache")
    first, compiled = reuse.compile_pages(pages, root, sources, cache)
    assert compiled == ["a", "web/b"]
    assert first == {p.name: _fresh(p, root) for p in pages}
    again, compiled = reuse.compile_pages(pages, root, sources, cache)
    assert compiled == [] and again == first
    _, compiled = reuse.compile_pages(pages, root, sources, cache, force=True)
    assert compiled == ["a", "web/b"]

    pages[1].main.write_text('#import "/web/style.typ": *\n#shout("c")\n')
    edited, compiled = reuse.compile_pages(pages, root, sources, cache)
    assert compiled == ["web/b"]
    assert edited == {p.name: _fresh(p, root) for p in pages}

    (root / "style.typ").write_text("#let hello(who) = [Hi, #who!]\n")  # shared
    styled, compiled = reuse.compile_pages(pages, root, sources, cache)
    assert compiled == ["a", "web/b"]
    assert styled["a"] == _fresh(pages[0], root) != edited["a"]


def test_a_changed_line_map_or_damaged_output_is_not_reused(tmp_path):
    root, pages, sources = _root(tmp_path)
    cache = reuse.Cache(tmp_path / "cache")
    reuse.compile_pages(pages, root, sources, cache)
    pages[0].linemap = [(root / "a.typ", 2)] * 2  # a template line moved
    _, compiled = reuse.compile_pages(pages, root, sources, cache)
    assert compiled == ["a"]
    (tmp_path / "cache" / "a.pdf").write_bytes(b"%PDF-torn")
    out, compiled = reuse.compile_pages(pages, root, sources, cache)
    assert compiled == ["a"] and out["a"] == _fresh(pages[0], root)


def test_warnings_are_shown_again_when_reused(tmp_path, capsys):
    root, pages, sources = _root(tmp_path)
    pages[0].main.write_text('#text(font: "No Such Font")[x]\n')
    cache = reuse.Cache(tmp_path / "cache")
    reuse.compile_pages(pages[:1], root, sources, cache)
    first = capsys.readouterr().err
    assert "warning: " in first and "unknown font family: no such font" in first
    _, compiled = reuse.compile_pages(pages[:1], root, sources, cache)
    assert compiled == [] and capsys.readouterr().err == first


def test_a_typst_error_names_the_first_failing_page_and_caches_nothing(tmp_path):
    root, pages, sources = _root(tmp_path)
    pages[0].main.write_text("#no-such-function()\n")
    cache = reuse.Cache(tmp_path / "cache")
    with pytest.raises(BuildError, match="unknown variable: no-such-function"):
        reuse.compile_pages(pages, root, sources, cache)
    assert not (tmp_path / "cache" / "a.json").exists()
