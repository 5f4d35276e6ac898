"""No pickle: checkpoints are safetensors + JSON, and code never unpickles freely.

A pickle file runs code when it is loaded: whoever can change a `.pt` file can run
anything on the machine that opens it. `torch.load` unpickles unless it is called with
`weights_only=True` (which only accepts tensors and plain containers). So a run or
release folder must hold no pickled checkpoint, and every `torch.load` call in the code
must pass `weights_only=True` as a literal.

The code is read with `ast`, not grep: a call split over lines, an alias
(`import torch as th`, `from torch import load`) or a comment does not fool it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .files import walk
from .registry import Finding, Outcome, Targets, check

PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt"}


def pickled_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in PICKLE_SUFFIXES
            and p.is_file()]


def _torch_load_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """The names under which a module refers to torch, and to torch.load itself."""
    modules, loads = {"torch"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            loads |= {a.asname or a.name for a in node.names if a.name == "load"}
    return modules, loads


def unsafe_torch_loads(source: str) -> list[int]:
    """Lines of `torch.load(...)` calls without a literal `weights_only=True`."""
    tree = ast.parse(source)
    modules, loads = _torch_load_names(tree)
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        is_load = (isinstance(func, ast.Attribute) and func.attr == "load"
                   and isinstance(func.value, ast.Name) and func.value.id in modules
                   ) or (isinstance(func, ast.Name) and func.id in loads)
        safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                   and k.value.value is True for k in node.keywords)
        if is_load and not safe:
            lines.append(node.lineno)
    return sorted(lines)


@check("model.no-pickle",
       verifies="run and release folders hold no pickled checkpoint (*.pt, *.pth, "
                "*.bin, *.pkl, *.pickle, *.ckpt), and every `torch.load` call in the "
                "code passes weights_only=True",
       why="loading a pickle runs whatever code it holds: a swapped checkpoint "
           "becomes code execution on every machine that opens it",
       fix="save weights with safetensors and state as JSON (llm_reference."
           "checkpoint does); call torch.load(path, weights_only=True)",
       targets=(("run",), ("release",), ("code",)))
def no_pickle(targets: Targets, on: str) -> Outcome:
    root = getattr(targets, on)
    if on != "code":
        found = pickled_files(root)
        return Outcome(f"{len(found)} pickled file(s)",
                       [Finding("a pickled checkpoint", p) for p in found])
    findings, files, unparsed = [], 0, 0
    for path in walk(root):
        if path.suffix != ".py":
            continue
        try:
            lines = unsafe_torch_loads(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            unparsed += 1  # a template or another Python's syntax: not ours to judge
            continue
        files += 1
        findings += [Finding("torch.load without weights_only=True", path, line)
                     for line in lines]
    return Outcome(f"{files} Python file(s) parsed"
                   + (f", {unparsed} not parseable (skipped)" if unparsed else ""),
                   findings)
