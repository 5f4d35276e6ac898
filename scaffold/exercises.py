"""Exercises mode (`scaffold new --exercises`): the reader writes the key functions.

For each roadmap step below, the starter repo's copy of the named functions keeps
its signature and docstring, and its body becomes

    raise NotImplementedError("exercise: write merge_pair, see step 3: …")

The reference code stays in the repo, out of the way, as a second package,
`solutions/PACKAGE_solutions/`: `make check` runs its reader checks (the oracle)
against the reader's functions, and `make solutions` copies the reference bodies
back. The repo's own tests turn an exercise's NotImplementedError into a skip that
names the step, so `make test` passes on the unfilled repo while `make check`
fails until the step is written.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

from . import roadmap

SOLUTIONS = "solutions"  # the folder of the reference package, beside the package


@dataclass(frozen=True)
class Exercise:
    """A roadmap step's functions to write, and how `check NODE` finds them."""

    node: str  # the roadmap node, and its reader checks
    functions: tuple[str, ...]  # "module:name" (or "module:Class.method")
    impl: str  # `check --impl`, relative to the package: "model:explicit_attention"
    parts: tuple[str, ...] = ()  # `check --part`: the parts the functions make

    def modules(self) -> list[str]:
        return list(dict.fromkeys(f.partition(":")[0] for f in self.functions))


# The step's central idea, small enough to write in an evening: the merge at the
# heart of BPE, attention written out, the filters of sampling.
EXERCISES = (
    Exercise("tokenizer", ("bpe_merges:merge_pair",), "tokenizer:Tokenizer"),
    Exercise("attention", ("model:explicit_attention",), "model:explicit_attention"),
    Exercise("generation", ("generate:top_k_filter", "generate:top_p_filter"),
             "generate", ("top_k_filter", "top_p_filter")),
)


def for_track(nodes: Iterable[str], checks: Iterable[str]) -> list[Exercise]:
    """The exercises of a track's nodes whose reader checks the repo carries."""
    have = set(nodes) & set(checks)
    return [e for e in EXERCISES if e.node in have]


def step(node: str) -> tuple[int, str]:
    """(the step's number in the book, its title): ("attention") -> (6, "Causal …")."""
    return roadmap.all_nodes().index(node) + 1, roadmap.titles()[node]


def blank(source: str, names: Iterable[str], message: str) -> str:
    """`source` with the bodies of the functions `names` ("f", "Class.method")
    replaced by `raise NotImplementedError(message)`; docstrings stay."""
    tree = ast.parse(source)
    found = dict(_functions(tree.body, ""))
    lines = source.splitlines(keepends=True)
    targets = []
    for name in names:
        if name not in found:
            raise KeyError(f"no function {name} to make an exercise of")
        targets.append(found[name])
    for fn in sorted(targets, key=lambda f: f.lineno, reverse=True):
        body = fn.body
        keep = 1 if _docstring(body[0]) else 0
        first = body[keep].lineno if keep < len(body) else body[-1].end_lineno + 1
        indent = " " * body[0].col_offset
        text = f"exercise: write {fn.name}, {message}"
        lines[first - 1:body[-1].end_lineno] = [_raise(text, indent)]
    return "".join(lines)


def _functions(body: list[ast.stmt], prefix: str):
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, f"{prefix}{node.name}.")


def _docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value,
                                                           ast.Constant)
            and isinstance(statement.value.value, str))


def _raise(message: str, indent: str) -> str:
    """`raise NotImplementedError("…")`, the message split to fit 88 columns."""
    pieces = textwrap.wrap(message, 88 - len(indent) - 8, drop_whitespace=False)
    quoted = f"\n{indent}    ".join(repr(p) for p in pieces)
    return f"{indent}raise NotImplementedError(\n{indent}    {quoted})\n"
