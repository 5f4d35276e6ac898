"""Quoting code by symbol, Typst escaping, and the line markers behind error mapping."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
import typst

from bookbuilder import render, snippets
from bookbuilder.errors import BuildError

REPO = Path(__file__).resolve().parents[1]

MODULE = '''"""A module to quote from."""

import functools

LIMIT = 3


@functools.lru_cache
@staticmethod
def decorated(x: int) -> int:
    """Doubles."""
    return 2 * x


class Box:
    size: int = 1

    def grow(self, by: int) -> None:
        self.size += by  # (B, T)

    @property
    def area(self) -> int:
        return self.size ** 2


def long():
    return "''' + "y" * 85 + '''"
'''


@pytest.fixture
def src(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(MODULE)
    return tmp_path


def lines(first: int, last: int) -> str:
    return "\n".join(MODULE.splitlines()[first - 1:last])


def test_quote_function_with_decorators(src):
    s = snippets.quote(src, "pkg/m.py:decorated")
    assert (s.path, s.symbol, s.first, s.last) == ("pkg/m.py", "decorated", 8, 12)
    assert s.text == lines(8, 12)
    assert s.text.startswith("@functools.lru_cache\n@staticmethod\ndef decorated")


def test_quote_class_method_property_and_assignment(src):
    s = snippets.quote(src, "pkg/m.py:Box.grow")
    assert (s.first, s.last) == (18, 19)
    assert s.text == lines(18, 19)  # exact, indentation included
    assert snippets.quote(src, "pkg/m.py:Box.area").first == 21
    assert snippets.quote(src, "pkg/m.py:Box.size").text == "    size: int = 1"
    assert snippets.quote(src, "pkg/m.py:LIMIT").text == "LIMIT = 3"
    assert snippets.quote(src, "pkg/m.py:Box").last == 23


def test_quote_real_reference_code():
    s = snippets.quote(REPO, "llm_reference/errors.py:UserError")
    file_lines = (REPO / "llm_reference/errors.py").read_text().splitlines()
    assert s.text == "\n".join(file_lines[s.first - 1:s.last])
    assert s.text.startswith("class UserError(Exception):")


def test_quote_errors(src):
    with pytest.raises(BuildError, match=r"pkg/m.py:27: quoted line of long is 98 "
                                         r"characters long \(limit 88\)"):
        snippets.quote(src, "pkg/m.py:long")
    with pytest.raises(BuildError, match="defines no 'Box.shrink'"):
        snippets.quote(src, "pkg/m.py:Box.shrink")
    with pytest.raises(BuildError, match="no file pkg/none.py"):
        snippets.quote(src, "pkg/none.py:f")
    with pytest.raises(BuildError, match="is not 'path/to/file.py:Symbol'"):
        snippets.quote(src, "pkg/m.py")


def test_quote_sees_file_changes(src):
    assert "2 * x" in snippets.quote(src, "pkg/m.py:decorated").text
    path = src / "pkg" / "m.py"
    path.write_text(MODULE.replace("2 * x", "3 * x  # changed"))
    assert "3 * x  # changed" in snippets.quote(src, "pkg/m.py:decorated").text


# --- escaping ----------------------------------------------------------------------


NASTY = 'a*b_c `d` $e$ #f <g> @h = -i +j /k [l] ~m "n" \'o\' \\p // q /* r'


def test_escape_round_trips_through_typst():
    doc = f"#set document(date: none)\n{render.escape(NASTY)}\n"
    pdf = typst.compile(doc.encode(), ignore_system_fonts=True, font_paths=[])
    from io import BytesIO

    import pypdf
    text = pypdf.PdfReader(BytesIO(pdf)).pages[0].extract_text()
    assert " ".join(text.split()) == " ".join(NASTY.split())


def test_string_literal_round_trips():
    value = 'line "one"\\\n\tline two'
    literal = render.tstr(value)
    doc = f"#set document(date: none)\n#raw({literal})\n#metadata({literal}) <v>"
    got = typst.query(doc.encode(), "<v>", field="value", one=True, format="json",
                      ignore_system_fonts=True)
    import json
    assert json.loads(got) == value


# --- line markers ------------------------------------------------------------------


def test_line_markers_map_output_to_source(tmp_path):
    (tmp_path / "c.typ").write_text(
        "first line\n"                      # 1
        "<% for i in range(2) %>\n"         # 2 (vanishes)
        "item << i >>\n"                    # 3
        "<% endfor %>\n"                    # 4 (vanishes)
        "<# a comment #>\n"                 # 5 (vanishes)
        "<< multi(\n"                       # 6
        "  'x') >> after\n"                 # 7 (inside a tag: no marker)
        "last\n")                           # 8
    files: list[Path] = []
    env = render.make_env([tmp_path], files)
    helpers = {"multi": lambda s: render.Typst(s * 2 + "\nmore")}
    out = render.render_template(env, "c.typ", helpers)
    text, where = render.strip_marks(out, files)
    assert text.split("\n") == ["first line", "item 0", "item 1", "xx", "more after",
                                "last", ""]
    assert [w[1] for w in where[:6]] == [1, 3, 3, 6, 6, 8]
    assert where[0][0] == (tmp_path / "c.typ").resolve()


def test_template_errors_name_the_source_line(tmp_path):
    (tmp_path / "c.typ").write_text("ok\nok\n<< missing >>\n")
    (tmp_path / "d.typ").write_text("ok\n<% if %>\n")
    (tmp_path / "e.typ").write_text("ok\n\n<< boom() >>\n")
    env = render.make_env([tmp_path], [])

    def boom():
        raise BuildError("helper failed")

    with pytest.raises(BuildError, match=r"c\.typ:3: undefined in template: 'missing'"):
        render.render_template(env, "c.typ", {})
    with pytest.raises(BuildError, match=r"d\.typ:2: template syntax error"):
        render.render_template(env, "d.typ", {})
    with pytest.raises(BuildError, match=r"e\.typ:3: helper failed"):
        render.render_template(env, "e.typ", {"boom": boom})


def test_values_are_escaped_unless_marked_typst(tmp_path):
    (tmp_path / "c.typ").write_text("<< s >> << t >> << n|num(2) >> << flag >>")
    env = render.make_env([tmp_path], [])
    out = render.render_template(env, "c.typ", {"s": "#x*", "t": render.Typst("#y"),
                                                "n": 1234.5, "flag": True})
    assert render.strip_marks(out, [tmp_path])[0] == r"\#x\* #y 1,234.50 true"


def test_jinja_default_comment_delimiters_are_plain_text(tmp_path):
    (tmp_path / "c.typ").write_text("{# kept #} {{ kept }}")
    env = render.make_env([tmp_path], [])
    text = render.strip_marks(render.render_template(env, "c.typ", {}), [tmp_path])[0]
    assert text == "{# kept #} {{ kept }}"
    assert isinstance(env.undefined, type) and issubclass(env.undefined,
                                                          jinja2.StrictUndefined)


def test_prose_turns_backticks_into_code():
    assert render.prose("run `a*b` now") == r'[run #raw("a*b") now]'
    assert render.prose("odd ` tick") == r"[odd \` tick]"
