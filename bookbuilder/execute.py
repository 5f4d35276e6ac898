"""Run the book's experiments as notebooks, and cache what they produce.

An experiment is a Python file in jupytext's percent format (`# %%` starts a cell).
It declares its settings in a top-level literal dict, read with `ast` (never run):

    BOOK = {
        "timeout": 300,              # seconds for the whole run (default 600)
        "seed": 0,                   # exported as BOOK_SEED; part of the cache key
        "data": ["inputs/text.txt"], # files it reads, relative to the book folder
        "settings": {"vocab_sizes": [256, 512]},   # free-form, for the experiment
        "needs": ["book_model"],     # experiments whose outputs it reads
        "resume": True,              # keep an interrupted run's files, continue it
    }

The builder converts it with jupytext, executes it with nbclient in a fresh kernel
whose working folder is the experiment's own cache folder, and keeps the executed
notebook plus every file the experiment wrote (JSON tables, SVG figures). A run is
cached under a key that hashes everything that can change its result; a failed run is
never cached.

An experiment may read what another one wrote: `needs` names experiment files in its
own folder (without `.py`). They run first (or load from the cache), the kernel finds
each one's `files/` folder in the environment variable NAME_DIR (`book_model` ->
BOOK_MODEL_DIR), which a reader running the file by hand can set too, and their cache
keys are part of the reader's key: retraining the book's model re-runs every chapter
that uses it.
A needed experiment that belongs to no roadmap node (node None) is shared: it gets
no chapter, only a cache entry and a line in the manifest.

`resume` is for long runs that save their own progress (a training run with
checkpoints): an interrupted or failed run leaves its working folder, named after
its cache key, and the next build runs the notebook again in that same folder, so
the experiment can pick up where it stopped. A change of inputs starts afresh.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jupytext
import nbformat

from llm_reference.atomic import write_json, write_text

from .errors import BuildError

EXECUTOR_VERSION = "1"  # bump when how experiments are run changes their outputs
HEADER_KEYS = {"timeout": int, "seed": int, "data": list, "settings": dict,
               "needs": list, "resume": bool}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MATPLOTLIBRC = "backend: agg\nsvg.hashsalt: llm-from-scratch\nsvg.fonttype: path\n"


@dataclass
class Experiment:
    name: str                 # file stem, unique in the book
    node: str | None          # roadmap node id; None: shared, needed by others
    path: Path                # the .py source
    timeout: int = 600
    seed: int = 0
    data: list[Path] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)  # experiment names, read first
    resume: bool = False      # an interrupted run continues in the same folder


@dataclass
class Cell:
    number: int          # 1-based position in the notebook (markdown cells count)
    line: int            # first line of the cell's code in the .py file
    source: str
    tags: list[str]
    text: str            # what the cell printed, plus its result's text/plain


@dataclass
class Result:
    experiment: Experiment
    key: str
    folder: Path         # cache: files/ (what it wrote), executed.ipynb, result.json
    cells: list[Cell]
    seconds: float       # how long it ran when it was executed
    cache_hit: bool

    @property
    def files(self) -> Path:
        return self.folder / "files"

    @property
    def notebook(self) -> Path:
        return self.folder / "executed.ipynb"

    def file(self, name: str) -> Path:
        path = self.files / name
        if not path.is_file():
            written = sorted(p.name for p in self.files.rglob("*") if p.is_file())
            raise BuildError(f"experiment {self.experiment.path} wrote no file "
                             f"{name!r} (it wrote: {', '.join(written) or 'nothing'})")
        return path

    def checkpoint_cells(self) -> list[Cell]:
        """Cells tagged `checkpoint`, else the last code cell."""
        tagged = [c for c in self.cells if "checkpoint" in c.tags]
        return tagged or self.cells[-1:]

    def output(self, cell: int | str | None = None) -> str:
        """Printed text of one cell (by notebook number or tag), or of all cells."""
        if cell is None:
            chosen = self.cells
        elif isinstance(cell, int):
            chosen = [c for c in self.cells if c.number == cell]
        else:
            chosen = [c for c in self.cells if cell in c.tags]
        if not chosen:
            raise BuildError(f"experiment {self.experiment.path} has no code cell "
                             f"{cell!r}")
        return "".join(c.text for c in chosen)


# --- the experiment's header -------------------------------------------------------


def read_experiment(path: Path, node: str | None, book_dir: Path) -> Experiment:
    """Parse the `BOOK = {...}` header; BuildError with file:line if it is malformed."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        raise BuildError(f"{path}:{e.lineno}: experiment does not parse: "
                         f"{e.msg}") from None
    header: dict[str, Any] = {}
    line = 1
    for stmt in tree.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else None
        if isinstance(target, ast.Name) and target.id == "BOOK":
            line = stmt.lineno
            try:
                header = ast.literal_eval(stmt.value)
            except ValueError:
                raise BuildError(f"{path}:{line}: BOOK must be a literal dict (no "
                                 "names or calls)") from None
            if not isinstance(header, dict):
                raise BuildError(f"{path}:{line}: BOOK must be a dict")
    for key, value in header.items():
        if key not in HEADER_KEYS or not isinstance(value, HEADER_KEYS[key]):
            raise BuildError(f"{path}:{line}: BOOK[{key!r}] = {value!r} is unknown or "
                             f"of the wrong type (known: {', '.join(HEADER_KEYS)})")
    data = []
    for rel in header.get("data", []):
        file = book_dir / str(rel)
        if not file.is_file():
            raise BuildError(f"{path}:{line}: BOOK['data'] names {rel!r}, but "
                             f"{file} does not exist")
        data.append(file)
    needs = [str(n) for n in header.get("needs", [])]
    for name in needs:
        if not name.isidentifier():  # it becomes an environment variable's name
            raise BuildError(f"{path}:{line}: BOOK['needs'] names {name!r}, which is "
                             "not a Python identifier; rename that experiment's file")
        if not (path.parent / f"{name}.py").is_file():
            raise BuildError(f"{path}:{line}: BOOK['needs'] names {name!r}, but "
                             f"{path.parent / name}.py does not exist")
    return Experiment(name=path.stem, node=node, path=path, data=data,
                      timeout=header.get("timeout", 600), seed=header.get("seed", 0),
                      settings=header.get("settings", {}), needs=needs,
                      resume=header.get("resume", False))


def with_needs(experiments: list[Experiment], book_dir: Path) -> list[Experiment]:
    """`experiments` and every experiment they need, each after what it needs.

    A needed experiment not in the list is read as shared (node None). A cycle is a
    BuildError that names it.
    """
    known = {e.name: e for e in experiments}
    ordered: dict[str, Experiment] = {}

    def visit(exp: Experiment, chain: list[str]) -> None:
        if exp.name in ordered:
            return
        if exp.name in chain:
            cycle = " -> ".join(chain[chain.index(exp.name):] + [exp.name])
            raise BuildError(f"{exp.path}: BOOK['needs'] forms a cycle: {cycle}")
        for name in exp.needs:
            if name not in known:
                known[name] = read_experiment(exp.path.parent / f"{name}.py", None,
                                              book_dir)
            visit(known[name], chain + [exp.name])
        ordered[exp.name] = exp

    for exp in experiments:
        visit(exp, [])
    return list(ordered.values())


# --- the cache key ---------------------------------------------------------------


def _module_file(src_root: Path, dotted: str) -> Path | None:
    base = src_root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(tree: ast.AST, package: str | None) -> set[str]:
    """Absolute dotted names a module imports (relative imports resolved against
    `package`); `from a import b` yields both 'a' and 'a.b' (b may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n}


@functools.lru_cache(maxsize=4096)
def _file_imports(path: Path, package: str, stamp: tuple[int, int]) -> frozenset[str]:
    """`_imported_names` of a module file, parsed once per version of the file
    (`stamp`: its mtime and size): the experiments share most of their modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(_imported_names(tree, package))


def local_modules(source: str, src_root: Path) -> list[Path]:
    """Every module under `src_root` that `source` imports, transitively, with the
    `__init__.py` of each package on the way (importing a.b runs a/__init__.py)."""
    found: dict[Path, None] = {}
    files: dict[str, Path | None] = {}  # dotted name -> its file, looked up once
    queue = [frozenset(_imported_names(ast.parse(source), None))]
    while queue:
        for dotted in sorted(queue.pop()):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name not in files:
                    files[name] = _module_file(src_root, name)
                file = files[name]
                if file is None or file in found:
                    continue
                found[file] = None
                mod_package = ".".join(parts[:i] if file.name == "__init__.py"
                                       else parts[:i - 1])
                stat = file.stat()
                queue.append(_file_imports(file, mod_package,
                                           (stat.st_mtime_ns, stat.st_size)))
    return sorted(found)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def cache_inputs(exp: Experiment, src_root: Path, book_dir: Path,
                 needs: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything that can change an experiment's result, as a JSON-able dict.

    `needs` maps each needed experiment's name to its cache key.
    """
    source = exp.path.read_text(encoding="utf-8")

    def rel(p: Path, root: Path) -> str:
        return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)

    return {
        "executor": EXECUTOR_VERSION,
        "experiment": sha256(source.encode()),
        "settings": exp.settings,
        "seed": exp.seed,
        "timeout": exp.timeout,
        "modules": {rel(p, src_root): sha256(p.read_bytes())
                    for p in local_modules(source, src_root)},
        "data": {rel(p, book_dir): sha256(p.read_bytes()) for p in exp.data},
        "needs": {name: (needs or {}).get(name) for name in exp.needs},
        "python": sys.version,
        "torch": _version("torch"),
    }


def cache_key(inputs: dict[str, Any]) -> str:
    return sha256(json.dumps(inputs, sort_keys=True).encode())


# --- running a notebook ----------------------------------------------------------


def _cell_lines(source: str, nb: nbformat.NotebookNode) -> list[int]:
    """First line in the .py of each notebook cell's text (1 for cells not found)."""
    lines, pos = [], 0
    for cell in nb.cells:
        found = source.find(cell.source, pos) if cell.source else -1
        if cell.cell_type != "code" or found < 0:
            lines.append(1)
            continue
        lines.append(source.count("\n", 0, found) + 1)
        pos = found + len(cell.source)
    return lines


def _cells(nb: nbformat.NotebookNode, lines: list[int]) -> list[Cell]:
    cells = []
    for number, (cell, line) in enumerate(zip(nb.cells, lines), start=1):
        if cell.cell_type != "code":
            continue
        text = ""
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                text += out.text
            elif out.output_type == "execute_result":
                text += out.data.get("text/plain", "") + "\n"
        tags = list(cell.metadata.get("tags", []))
        cells.append(Cell(number, line, cell.source, tags, text))
    return cells


def _failure(exp: Experiment, nb: nbformat.NotebookNode, lines: list[int], index: int,
             content: dict[str, Any] | None, reason: str) -> BuildError:
    """One line naming experiment, cell and line, then the traceback without ANSI."""
    number = index + 1
    line = lines[index]
    trace = ""
    if content is not None:
        trace = ANSI.sub("", "\n".join(content.get("traceback", [])))
        reason = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"
        counts = {c.get("execution_count"): i for i, c in enumerate(nb.cells)
                  if c.cell_type == "code"}
        frames = re.findall(r"Cell In\[(\d+)\], line (\d+)", trace)
        if frames:  # the innermost frame that is the experiment's own code
            count, offset = (int(x) for x in frames[-1])
            if count in counts:
                line = lines[counts[count]] + offset - 1
    return BuildError(f"experiment {exp.path} failed in cell {number}, line {line} "
                      f"({exp.path}:{line}): {reason}"
                      + (f"\n{trace}" if trace else ""))


def _kernel_env(exp: Experiment, src_root: Path, book_dir: Path, rc_dir: Path,
                needs: dict[str, Path]) -> dict:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(src_root)] + [p for p in
                                   env.get("PYTHONPATH", "").split(os.pathsep) if p]),
        PYTHONHASHSEED="0",          # set and dict order of str keys stay fixed
        SOURCE_DATE_EPOCH="0",       # matplotlib writes no date into SVG/PDF
        MATPLOTLIBRC=str(rc_dir),    # fixed SVG ids, Agg backend
        TQDM_DISABLE="1",            # no progress bars inside the notebook's outputs
        BOOK_DIR=str(book_dir.resolve()),
        BOOK_SEED=str(exp.seed),
    )
    env.update({f"{name.upper()}_DIR": str(folder.resolve())
                for name, folder in needs.items()})
    env.pop("MPLBACKEND", None)
    return env


def run_notebook(exp: Experiment, workdir: Path, src_root: Path, book_dir: Path,
                 on_cell: Callable[[int, int], None] | None = None,
                 needs: dict[str, Path] | None = None
                 ) -> tuple[nbformat.NotebookNode, list[int]]:
    """Execute `exp` in a fresh kernel with `workdir/files` as its working folder
    (kept from an interrupted run when `exp.resume`); `needs`: name -> files/."""
    from nbclient import NotebookClient
    from nbclient.exceptions import (
        CellExecutionError,
        CellTimeoutError,
        DeadKernelError,
    )

    source = exp.path.read_text(encoding="utf-8")
    nb = jupytext.reads(source, fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    for number, cell in enumerate(nb.cells, start=1):
        cell["id"] = f"cell-{number}"  # nbformat's ids are random; these are stable
    lines = _cell_lines(source, nb)
    files = workdir / "files"
    files.mkdir(parents=True, exist_ok=exp.resume)
    (workdir / "matplotlibrc").write_text(MATPLOTLIBRC)
    code_total = sum(c.cell_type == "code" for c in nb.cells)
    state: dict[str, Any] = {"index": 0, "error": None, "done": 0}

    def started(cell, cell_index, **_):
        state["index"] = cell_index

    def finished(cell, cell_index, **_):
        state["done"] += 1
        if on_cell:
            on_cell(state["done"], code_total)

    def failed(cell, cell_index, execute_reply, **_):
        state["index"], state["error"] = cell_index, execute_reply["content"]

    client = NotebookClient(
        nb, timeout=exp.timeout, kernel_name="python3", record_timing=False,
        allow_errors=False, startup_timeout=120,
        resources={"metadata": {"path": str(files)}},
        on_cell_execute=started, on_cell_executed=finished, on_cell_error=failed)
    env = _kernel_env(exp, src_root, book_dir, workdir, needs or {})
    with open(workdir / "kernel.log", "w") as log:
        try:
            client.execute(env=env, stderr=log)
        except CellTimeoutError:
            raise _failure(exp, nb, lines, state["index"], None,
                           f"timed out after {exp.timeout} s "
                           "(BOOK['timeout'])") from None
        except DeadKernelError:
            raise _failure(exp, nb, lines, state["index"], None,
                           "the kernel died (out of memory?)") from None
        except CellExecutionError as e:
            raise _failure(exp, nb, lines, state["index"], state["error"],
                           str(e)) from None
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # no timestamps, ever
    return nb, lines


# --- the cache -------------------------------------------------------------------


def _folder(cache_dir: Path, exp: Experiment, key: str) -> Path:
    return cache_dir / f"{exp.name}-{key[:16]}"


def _load(exp: Experiment, folder: Path, key: str) -> Result | None:
    try:
        meta = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != key:
        return None
    cells = [Cell(**c) for c in meta["cells"]]
    return Result(exp, key, folder, cells, meta["seconds"], cache_hit=True)


def run(exp: Experiment, cache_dir: Path, src_root: Path, book_dir: Path, *,
        force: bool = False, no_exec: bool = False,
        on_cell: Callable[[int, int], None] | None = None,
        needs: dict[str, Result] | None = None) -> Result:
    """The experiment's result: from the cache when its key matches, else executed.

    `needs` holds the results of the experiments that `exp.needs` names.
    """
    needs = needs or {}
    missing = [name for name in exp.needs if name not in needs]
    if missing:
        raise BuildError(f"experiment {exp.path} needs {', '.join(missing)}, which "
                         "did not run first")
    key = cache_key(cache_inputs(exp, src_root, book_dir,
                                 {name: needs[name].key for name in exp.needs}))
    folder = _folder(cache_dir, exp, key)
    if not force and (hit := _load(exp, folder, key)):
        return hit
    if no_exec:
        raise BuildError(f"experiment {exp.path} has no cached result for its current "
                         "inputs; build without --no-exec to run it")
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = re.compile(re.escape(f".{exp.name}-") + r"[0-9a-f]{16}\.partial")
    if exp.resume:  # one working folder per key, kept when the run stops early
        tmp = cache_dir / f".{exp.name}-{key[:16]}.partial"
        for old in cache_dir.iterdir():
            if partial.fullmatch(old.name) and old != tmp:
                shutil.rmtree(old)
        if force:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp = cache_dir / f".{exp.name}-{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
    folders = {name: needs[name].files for name in exp.needs}
    finished = False
    try:
        start = time.perf_counter()
        nb, lines = run_notebook(exp, tmp, src_root, book_dir, on_cell, folders)
        seconds = round(time.perf_counter() - start, 3)
        write_text(tmp / "executed.ipynb", nbformat.writes(nb) + "\n")
        cells = _cells(nb, lines)
        write_json(tmp / "result.json", {"key": key, "seconds": seconds,
                                         "cells": [c.__dict__ for c in cells]})
        (tmp / "kernel.log").unlink(missing_ok=True)
        (tmp / "matplotlibrc").unlink(missing_ok=True)
        # replace the stale folder(s) of this experiment by the new one
        stale = re.compile(re.escape(exp.name) + r"-[0-9a-f]{16}")
        for old in cache_dir.iterdir():
            if stale.fullmatch(old.name):
                shutil.rmtree(old)
        os.replace(tmp, folder)
        finished = True
    finally:
        if finished or not exp.resume:
            shutil.rmtree(tmp, ignore_errors=True)
    return Result(exp, key, folder, cells, seconds, cache_hit=False)


def run_all(experiments: list[Experiment], cache_dir: Path, src_root: Path,
            book_dir: Path, *, force: bool = False, no_exec: bool = False,
            show_progress: bool | None = None) -> dict[str, Result]:
    """Run (or load) every experiment in order, with a progress display on a TTY.

    Each experiment's `needs` must come before it in the list (see `with_needs`).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True)
    show = console.is_terminal if show_progress is None else show_progress
    log = show_progress is None and not show  # not a terminal: one line each
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        disable=not show)
    results: dict[str, Result] = {}
    with progress if show else nullcontext():
        overall = progress.add_task("experiments", total=len(experiments))
        for exp in experiments:
            task = progress.add_task(f"  {exp.name}", total=None)

            def on_cell(done: int, total: int, task=task) -> None:
                progress.update(task, completed=done, total=total)

            result = run(exp, cache_dir, src_root, book_dir, force=force,
                         no_exec=no_exec, on_cell=on_cell,
                         needs={name: results[name] for name in exp.needs})
            label = "cached" if result.cache_hit else f"ran in {result.seconds:.1f} s"
            if log:
                print(f"experiment {exp.name}: {label}", file=sys.stderr, flush=True)
            progress.update(task, description=f"  {exp.name} ({label})",
                            completed=1, total=1)
            progress.advance(overall)
            results[exp.name] = result
    return results
