"""The quickstart helpers: a run made once per key and then read from the cache,
the caller's random state kept, atomic entries, and the book's cache key covering
the helpers for every experiment that uses them."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from bookbuilder import execute
from llm_reference import quickstart
from llm_reference.errors import UserError
from llm_reference.quickstart import TinyRun, cached, tiny_base

REPO = Path(__file__).resolve().parents[1]
SMALL = {"context_length": 16, "n_layer": 1, "n_head": 2, "d_model": 16}


def test_a_run_is_trained_once_then_read_from_the_cache(data_dir, tmp_path,
                                                        monkeypatch):
    run = tiny_base(data_dir, 4, model=SMALL, cache_dir=tmp_path)
    assert isinstance(run, TinyRun) and run.data_dir == data_dir
    assert run.folder.name == "run" and (run.folder / "checkpoints").is_dir()
    config = (run.folder / "config.toml").read_text()
    assert "max_steps = 4" in config and str(data_dir) in config
    last = json.loads((run.folder / "metrics.jsonl").read_text().splitlines()[-1])
    assert run.val_loss == last["val_loss"]

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(quickstart, "train", no_training)
    assert tiny_base(data_dir, 4, model=SMALL, cache_dir=tmp_path) == run
    with pytest.raises(AssertionError, match="trained again"):  # another key
        tiny_base(data_dir, 4, model=SMALL, cache_dir=tmp_path, seed=1)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_callers_random_state_is_kept(data_dir, tmp_path):
    random.seed(3)
    torch.manual_seed(3)
    expected = random.random(), torch.rand(2)
    random.seed(3)
    torch.manual_seed(3)
    tiny_base(data_dir, 2, model=SMALL, cache_dir=tmp_path)  # seeds and trains
    assert random.random() == expected[0] and torch.equal(torch.rand(2), expected[1])


def test_an_entry_made_meanwhile_by_another_process_is_used(tmp_path):
    def make(out: Path, inner: bool) -> None:
        if not inner:  # another process makes the same entry first
            cached("demo", {"n": 1}, lambda o: make(o, True), tmp_path)
        out.mkdir(parents=True)
        (out / "who").write_text("inner" if inner else "outer")

    folder = cached("demo", {"n": 1}, lambda o: make(o, False), tmp_path)
    assert (folder / "who").read_text() == "inner"
    assert [p.name for p in tmp_path.iterdir()] == [folder.parent.name]


def test_a_failed_make_leaves_nothing(tmp_path):
    def broken(out: Path) -> None:
        out.mkdir(parents=True)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        cached("demo", {}, broken, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_prepare_did_not_write_is_refused(tmp_path):
    with pytest.raises(UserError, match="no manifest.json; pass a folder written by"):
        tiny_base(tmp_path, 2, cache_dir=tmp_path)


# --- the book's cache key ----------------------------------------------------------


def test_editing_quickstart_changes_the_key_of_an_experiment_that_uses_it(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "llm_reference", src / "llm_reference")
    book = REPO / "book"
    exp = execute.read_experiment(book / "experiments" / "quantization_int8.py", "n",
                                  book)
    inputs = execute.cache_inputs(exp, src, book)
    assert "llm_reference/quickstart.py" in inputs["modules"]
    helper = src / "llm_reference" / "quickstart.py"
    helper.write_text(helper.read_text() + "\n# an edit changes the source\n")
    edited = execute.cache_inputs(exp, src, book)
    assert execute.cache_key(edited) != execute.cache_key(inputs)


def test_every_experiment_that_uses_quickstart_imports_it_itself():
    """So its cache key holds quickstart.py (and what that imports) directly."""
    users = [p for p in sorted((REPO / "book" / "experiments").glob("*.py"))
             if "tiny_base(" in p.read_text() or "tiny_data(" in p.read_text()]
    assert len(users) >= 3  # the others start from the book model (book_model.py)
    for path in users:
        assert "from llm_reference.quickstart import" in path.read_text(), path.name


# --- the book's model ----------------------------------------------------------------


def test_book_model_is_found_in_the_folder_named_by_BOOK_MODEL_DIR(tmp_path,
                                                                   monkeypatch):
    (tmp_path / "book_model.json").write_text(json.dumps({"val_loss": 3.1}))
    monkeypatch.setenv("BOOK_MODEL_DIR", str(tmp_path))
    book = quickstart.book_model()
    assert (book.run, book.data) == (tmp_path / "run", tmp_path / "data")
    assert book.summary == {"val_loss": 3.1}


def test_a_missing_book_model_says_to_run_book_model_py(tmp_path, monkeypatch):
    monkeypatch.delenv("BOOK_MODEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"no book model in .*: run book_model.py"):
        quickstart.book_model()
