"""Experiments: header, cache key (what invalidates it), failures, cache hits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bookbuilder import execute
from bookbuilder.errors import BuildError
from bookbuilder.pipeline import Options, build

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "book"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A source root with a copy of the reference modules the fixture imports."""
    root = tmp_path / "src"
    (root / "llm_reference").mkdir(parents=True)
    for name in ("__init__.py", "atomic.py", "errors.py"):
        shutil.copy(REPO / "llm_reference" / name, root / "llm_reference" / name)
    return root


@pytest.fixture
def book(tmp_path: Path) -> Path:
    dst = tmp_path / "book"
    shutil.copytree(FIXTURE, dst)
    return dst


def key(book: Path, src: Path, name: str, node: str = "n") -> str:
    exp = execute.read_experiment(book / "experiments" / name, node, book)
    return execute.cache_key(execute.cache_inputs(exp, src, book))


def test_header_is_read_without_running(book):
    exp = execute.read_experiment(book / "experiments/hello.py", "intro", book)
    assert (exp.name, exp.timeout, exp.seed) == ("hello", 60, 0)
    assert exp.settings == {"repeat": 3}
    assert exp.data == [book / "inputs/sample.txt"]


def test_header_errors(book):
    path = book / "experiments" / "bad.py"
    path.write_text("# %%\nimport os\nBOOK = {'timeout': os.cpu_count()}\n")
    with pytest.raises(BuildError, match=r"bad\.py:3: BOOK must be a literal dict"):
        execute.read_experiment(path, "n", book)
    path.write_text("# %%\nBOOK = {'timout': 3}\n")
    with pytest.raises(BuildError, match=r"bad\.py:2: BOOK\['timout'\]"):
        execute.read_experiment(path, "n", book)
    path.write_text("# %%\nBOOK = {'data': ['inputs/missing.txt']}\n")
    with pytest.raises(BuildError, match="inputs/missing.txt"):
        execute.read_experiment(path, "n", book)


def test_imports_are_found_transitively(src):
    found = execute.local_modules("from llm_reference.atomic import write_json\n", src)
    names = [p.relative_to(src).as_posix() for p in found]
    # atomic.py imports .errors; importing a submodule runs the package __init__
    assert names == ["llm_reference/__init__.py", "llm_reference/atomic.py",
                     "llm_reference/errors.py"]
    assert execute.local_modules("import json\nimport numpy\n", src) == []
    assert [p.name for p in execute.local_modules("from llm_reference import errors",
                                                  src)] == ["__init__.py", "errors.py"]


def test_cache_key_changes_with_each_input(book, src):
    base = key(book, src, "atomic_demo.py")
    assert key(book, src, "atomic_demo.py") == base  # deterministic
    errors = src / "llm_reference" / "errors.py"
    original = errors.read_text()
    errors.write_text(original + "\n# a comment changes the source\n")
    assert key(book, src, "atomic_demo.py") != base  # imported transitively via atomic
    errors.write_text(original)
    assert key(book, src, "atomic_demo.py") == base
    (src / "llm_reference" / "unrelated.py").write_text("X = 1\n")
    assert key(book, src, "atomic_demo.py") == base  # not imported: no effect

    hello = key(book, src, "hello.py")
    (book / "inputs" / "sample.txt").write_text("different words\n")
    assert key(book, src, "hello.py") != hello  # declared data file
    exp = book / "experiments" / "hello.py"
    exp.write_text(exp.read_text().replace('"repeat": 3', '"repeat": 4'))
    changed = key(book, src, "hello.py")
    exp.write_text(exp.read_text().replace('"seed": 0', '"seed": 1'))
    assert key(book, src, "hello.py") != changed  # seed


def test_failing_experiment_names_experiment_cell_and_line(book, src, tmp_path):
    exp_path = book / "experiments" / "boom.py"
    exp_path.write_text(
        "# %% [markdown]\n"          # 1  cell 1
        "# Fails in a helper.\n"     # 2
        "\n"                         # 3
        "# %%\n"                     # 4  cell 2
        "BOOK = {'timeout': 60}\n"   # 5
        "def helper(x):\n"           # 6
        "    return x / 0\n"         # 7
        "\n"                         # 8
        "# %%\n"                     # 9  cell 3
        "print('before')\n"          # 10
        "helper(1)\n")               # 11
    exp = execute.read_experiment(exp_path, "n", book)
    cache = tmp_path / "cache"
    with pytest.raises(BuildError) as e:
        execute.run(exp, cache, src, book)
    message = str(e.value)
    first = message.splitlines()[0]
    assert f"experiment {exp_path} failed in cell 3, line 7 ({exp_path}:7)" in first
    assert "ZeroDivisionError: division by zero" in first
    assert "\x1b[" not in message and "Traceback" in message and "helper(1)" in message
    # a failed run is never cached and leaves no temporary folder
    assert not cache.exists() or list(cache.iterdir()) == []


@pytest.mark.slow
def test_cache_hit_and_invalidation_end_to_end(book, src, tmp_path):
    """Build, rebuild (all cached), edit an imported module (one re-run), edit a
    module that is only quoted (no re-run, new text in the PDF)."""
    (src / "llm_reference" / "quoted.py").write_text("def shown():\n    return 'v1'\n")
    chapter = book / "chapters" / "03-extra.typ"
    quote = '\n<< code("llm_reference/quoted.py:shown") >>\n'
    chapter.write_text(chapter.read_text() + quote)
    out = tmp_path / "dist"
    opts = Options(book_dir=book, out=out, src_root=src, track="basic", progress=False)

    def manifest() -> dict:
        return json.loads((out / "build-manifest.json").read_text())["experiments"]

    first = build(opts)
    assert {n: r.cache_hit for n, r in first.results.items()} == {
        "hello": False, "atomic_demo": False}
    build(opts)
    assert {n: e["cache_hit"] for n, e in manifest().items()} == {
        "hello": True, "atomic_demo": True}

    errors = src / "llm_reference" / "errors.py"
    errors.write_text(errors.read_text() + "\n# edited\n")
    third = build(opts)
    assert {n: r.cache_hit for n, r in third.results.items()} == {
        "hello": True, "atomic_demo": False}

    import pypdf
    (src / "llm_reference" / "quoted.py").write_text("def shown():\n    return 'v2'\n")
    fourth = build(opts)
    assert all(r.cache_hit for r in fourth.results.values())
    pages = pypdf.PdfReader(fourth.pdfs["basic"]).pages
    text = "".join(p.extract_text() for p in pages)
    assert "'v2'" in text and "'v1'" not in text

    with pytest.raises(BuildError, match="no cached result"):
        (book / "inputs" / "sample.txt").write_text("new data\n")
        build(Options(book_dir=book, out=out, src_root=src, track="basic",
                      no_exec=True, progress=False))


def write_experiment(book: Path, name: str, header: str, body: str) -> Path:
    path = book / "experiments" / f"{name}.py"
    path.write_text(f"# %%\nBOOK = {header}\n\n# %%\n{body}\n")
    return path


def test_needs_come_first_and_cycles_are_named(book):
    write_experiment(book, "shared", "{'timeout': 60}", "print(1)")
    reader = write_experiment(book, "reader", "{'needs': ['shared']}", "print(2)")
    exp = execute.read_experiment(reader, "n", book)
    ordered = execute.with_needs([exp], book)
    assert [(e.name, e.node) for e in ordered] == [("shared", None), ("reader", "n")]
    write_experiment(book, "shared", "{'needs': ['reader']}", "print(1)")
    with pytest.raises(BuildError, match="cycle: reader -> shared -> reader"):
        execute.with_needs([exp], book)
    write_experiment(book, "lost", "{'needs': ['nowhere']}", "print(3)")
    with pytest.raises(BuildError, match=r"lost\.py:2: BOOK\['needs'\] names "
                                         r"'nowhere'"):
        execute.read_experiment(book / "experiments" / "lost.py", "n", book)


def test_a_needed_experiments_key_is_part_of_the_readers(book, src):
    write_experiment(book, "shared", "{}", "print(1)")
    path = write_experiment(book, "reader", "{'needs': ['shared']}", "print(2)")
    exp = execute.read_experiment(path, "n", book)
    keys = {execute.cache_key(execute.cache_inputs(exp, src, book, {"shared": k}))
            for k in ("a" * 64, "b" * 64)}
    assert len(keys) == 2


@pytest.mark.slow
def test_reader_sees_the_needed_files_and_reruns_when_they_change(book, src, tmp_path):
    def shared(value: str) -> execute.Experiment:
        path = write_experiment(book, "shared", "{}",
                                f"open('value.txt', 'w').write({value!r})")
        return execute.read_experiment(path, None, book)

    shared("v1")
    path = write_experiment(
        book, "reader", "{'needs': ['shared']}",
        "import os, pathlib\n"
        "print((pathlib.Path(os.environ['SHARED_DIR']) / 'value.txt').read_text())")
    reader = execute.read_experiment(path, "n", book)
    cache = tmp_path / "cache"

    def build(exp_shared: execute.Experiment) -> dict[str, execute.Result]:
        return execute.run_all(execute.with_needs([reader], book), cache, src, book,
                               show_progress=False)

    first = build(shared("v1"))
    assert first["reader"].output().strip() == "v1"
    again = build(shared("v1"))
    assert again["shared"].cache_hit and again["reader"].cache_hit
    third = build(shared("v2"))
    assert not third["shared"].cache_hit and not third["reader"].cache_hit
    assert third["reader"].output().strip() == "v2"
    with pytest.raises(BuildError, match="needs shared, which did not run first"):
        execute.run(reader, cache, src, book)


@pytest.mark.slow
def test_resumable_run_continues_in_its_folder_after_a_failure(book, src, tmp_path):
    path = write_experiment(
        book, "long", "{'resume': True}",
        "from pathlib import Path\n"
        "if not Path('progress').exists():\n"
        "    Path('progress').write_text('half')\n"
        "    raise RuntimeError('interrupted')\n"
        "print('resumed from', Path('progress').read_text())")
    exp = execute.read_experiment(path, "n", book)
    cache = tmp_path / "cache"
    with pytest.raises(BuildError, match="interrupted"):
        execute.run(exp, cache, src, book)
    assert [p.name for p in cache.iterdir()][0].endswith(".partial")
    result = execute.run(exp, cache, src, book)
    assert result.output().strip() == "resumed from half"
    assert [p.name for p in cache.iterdir()] == [result.folder.name]


def test_each_need_is_an_environment_variable_named_after_it(book, src, tmp_path):
    path = write_experiment(book, "reader", "{'needs': ['book_model']}", "print(1)")
    write_experiment(book, "book_model", "{}", "print(0)")
    exp = execute.read_experiment(path, "n", book)
    env = execute._kernel_env(exp, src, book, tmp_path,
                              {"book_model": tmp_path / "files"})
    assert env["BOOK_MODEL_DIR"] == str((tmp_path / "files").resolve())
    write_experiment(book, "bad", "{'needs': ['book-model']}", "print(2)")
    with pytest.raises(BuildError, match="not a Python identifier"):
        execute.read_experiment(book / "experiments" / "bad.py", "n", book)


def test_the_books_experiments_do_not_import_the_builder():
    """Readers get them inside the PDF: they must run without `bookbuilder`."""
    experiments = Path(__file__).parents[1] / "book" / "experiments"
    for path in sorted(experiments.glob("*.py")):
        assert "bookbuilder" not in path.read_text(encoding="utf-8"), path.name
