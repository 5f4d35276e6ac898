"""Quote reference code by symbol: `llm_reference/model.py:GPT.forward` -> exact lines.

The book never copies code by hand. A reference names a file (relative to the source
root, the folder that holds `llm_reference/`) and a dotted symbol inside it: a function,
a class, a method (`Class.method`), or a module-level assignment. We find it with `ast`
(the module is never imported) and quote the file's own lines from the first decorator
to the end of the definition, so the text, path and line numbers in the PDF are exactly
those of the file.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import BuildError

MAX_WIDTH = 88  # the project's line limit; the PDF's code column is sized for it


@dataclass(frozen=True)
class Snippet:
    path: str    # as written in the reference, e.g. "llm_reference/model.py"
    symbol: str  # dotted, e.g. "GPT.forward"
    first: int   # first line, 1-based, decorators included
    last: int    # last line, inclusive
    text: str    # lines first..last exactly as in the file, without the last newline


def split_ref(ref: str) -> tuple[str, str]:
    """'path.py:Symbol.attr' -> ('path.py', 'Symbol.attr'); BuildError if malformed."""
    path, sep, symbol = ref.partition(":")
    if not sep or not path.endswith(".py") or not symbol:
        raise BuildError(f"code reference {ref!r} is not 'path/to/file.py:Symbol' "
                         "(or 'path/to/file.py:Class.method')")
    if not all(part.isidentifier() for part in symbol.split(".")):
        raise BuildError(f"code reference {ref!r}: {symbol!r} is not a dotted name")
    return path, symbol


@lru_cache(maxsize=256)
def _parse(path: Path, mtime_ns: int, size: int) -> tuple[ast.Module, tuple[str, ...]]:
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as e:
        raise BuildError(f"{path}:{e.lineno}: cannot quote from a file that does not "
                         f"parse: {e.msg}") from None
    return tree, tuple(text.splitlines())


def parse_file(path: Path) -> tuple[ast.Module, tuple[str, ...]]:
    """The module's syntax tree and its lines, re-read only when the file changes."""
    st = path.stat()
    return _parse(path.resolve(), st.st_mtime_ns, st.st_size)


def _names(node: ast.stmt) -> list[str]:
    """The names a statement defines: def/class name or assignment targets."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def find_symbol(tree: ast.Module, symbol: str) -> ast.stmt | None:
    """Walk `A.b.c` through nested bodies; the last definition of a name wins (as at
    run time, e.g. a function redefined later in the module)."""
    body: list[ast.stmt] = tree.body
    found: ast.stmt | None = None
    for part in symbol.split("."):
        found = None
        for node in body:
            if part in _names(node):
                found = node
        if found is None:
            return None
        body = getattr(found, "body", [])
    return found


def quote(src_root: Path, ref: str, max_width: int = MAX_WIDTH) -> Snippet:
    """The exact source of `ref`, checked against the line limit."""
    rel, symbol = split_ref(ref)
    path = src_root / rel
    if not path.is_file():
        raise BuildError(f"code reference {ref!r}: no file {rel} under {src_root}")
    tree, lines = parse_file(path)
    node = find_symbol(tree, symbol)
    if node is None:
        raise BuildError(f"code reference {ref!r}: {rel} defines no {symbol!r}")
    decorators = getattr(node, "decorator_list", [])
    first = min([node.lineno] + [d.lineno for d in decorators])
    last = node.end_lineno or node.lineno
    for number in range(first, last + 1):
        width = len(lines[number - 1])
        if width > max_width:
            raise BuildError(f"{rel}:{number}: quoted line of {symbol} is {width} "
                             f"characters long (limit {max_width}); wrap it")
    return Snippet(rel, symbol, first, last, "\n".join(lines[first - 1:last]))
