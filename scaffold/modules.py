"""Which `llm_reference` modules a starter repo needs, and how they are copied.

A starter repo carries its own copy of the reference code, so that its owner can
read and change every line. We never keep that copy by hand. At generation time we
start from the modules that implement the roadmap nodes of the chosen track, follow
their imports with `ast` to every module they need, add the commands (`cli/…`) that
those modules complete, and copy those files with two changes only:

1. a header comment that says where the file came from, and
2. the package's name: `llm_reference` becomes the project's package wherever it
   appears as a word (absolute imports, `importlib` calls, `python -m …` hints).
   Relative imports (`from .model import GPT`) need no change.

So the starter repo stays right as `llm_reference` changes: `python -m scaffold
update` renders it again.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import llm_reference

REFERENCE = Path(llm_reference.__file__).resolve().parent
REFERENCE_NAME = "llm_reference"
DISTRIBUTION = "llm-from-scratch"  # ours: its requirements give version bounds

# roadmap node -> the modules that implement it. A node counts for a starter repo
# only when all of its modules exist (distributed.py, say, may not be written yet).
# Nodes without an entry are covered by the modules that these import.
NODE_MODULES: dict[str, tuple[str, ...]] = {
    "data": ("data", "sources", "compliance", "audit/__init__", "audit/report"),
    "tokenizer": ("tokenizer",),
    "dataset": ("data",),
    "model": ("model",),
    "pretraining": ("train",),
    "stability": ("stability",),
    "scaling": ("plan",),
    "distributed": ("distributed",),
    "evaluation": ("evaluate", "harness"),  # harness: `eval --tasks` (lm-eval)
    "generation": ("generate", "artifacts"),  # artifacts: any model folder loads
    "finetuning": ("finetune", "lora", "chat"),
    "preference": ("dpo",),
    "reasoning-rl": ("grpo", "rl_tasks"),
    "quantization": ("quantize",),
    "serving": ("serve", "engine"),
    "release": ("release", "hf_folder", "gguf_export"),  # `export --format hf/gguf`
}
# The reader checks (`check NODE`): check/__init__.py imports one module per node
# that has checks; a starter repo keeps those of its track's nodes (entry_modules
# adds them, render_check_init drops the others from __init__.py).
CHECK_INIT = "check/__init__"


def exists(module: str) -> bool:
    """A module is named by its path in the package without `.py`: "model", or
    "cli/train" for a module of the subpackage `cli` ("cli/__init__" for the
    subpackage itself)."""
    return (REFERENCE / f"{module}.py").is_file()


def features(nodes: Iterable[str]) -> list[str]:
    """The nodes (of a track) whose modules all exist, in the order given."""
    return [node for node in nodes
            if node in NODE_MODULES and all(map(exists, NODE_MODULES[node]))]


def entry_modules(nodes: Iterable[str]) -> list[str]:
    """The modules that implement these nodes, and their reader checks, without
    duplicates."""
    nodes = list(nodes)
    found = [m for node in features(nodes) for m in NODE_MODULES[node]]
    found += check_modules(nodes)
    return list(dict.fromkeys(found))


def check_modules(nodes: Iterable[str]) -> list[str]:
    """The reader-check modules of these nodes ("check/attention", …) that exist;
    with them the check subpackage and the `check` command."""
    found = [f"check/{node}" for node in nodes if exists(f"check/{node}")]
    return [CHECK_INIT, *found] if found else []


def check_nodes(modules: Iterable[str]) -> list[str]:
    """The nodes whose checks these modules hold: ["check/attention"] ->
    ["attention"]."""
    return [m.split("/")[1] for m in modules if m.startswith("check/")
            and m not in (CHECK_INIT, "check/runner")]


# ------------------------------------------------------------------ imports


def _is_type_checking(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): imports only for the checker."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _resolve(parts: list[str]) -> str:
    """The module that a dotted name inside the package names: ["model"] -> "model",
    ["cli", "train"] -> "cli/train", ["check"] (a subpackage) -> "check/__init__"."""
    path = "/".join(parts)
    if parts and not exists(path) and (REFERENCE / path / "__init__.py").is_file():
        return f"{path}/__init__"
    return path or "__init__"


def _package_of(module: str) -> list[str]:
    """The subpackage a module is in: "cli/train" -> ["cli"], "model" -> []."""
    return module.split("/")[:-1]


def imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(reference modules, third-party top-level packages) that `module` imports,
    also inside functions; not those under `if TYPE_CHECKING:`."""
    return _scan(module, *_key(module))[:2]


def strings(module: str) -> frozenset[str]:
    """The string constants in `module`'s source."""
    return _scan(module, *_key(module))[2]


def _key(module: str) -> tuple[Path, int]:
    path = REFERENCE / f"{module}.py"
    return path, path.stat().st_mtime_ns  # a changed file is scanned again


@functools.lru_cache(maxsize=256)
def _scan(module: str, path: Path, mtime_ns: int) -> tuple[
        frozenset[str], frozenset[str], frozenset[str]]:
    """One pass over a module's syntax tree: imports (ours, theirs) and strings."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = list(ast.walk(tree))
    typing_only = {id(n) for node in nodes if _is_type_checking(node)
                   for statement in node.body for n in ast.walk(statement)}
    ours, theirs = set(), set()
    for node in nodes:
        if id(node) in typing_only or not isinstance(node, (ast.Import,
                                                            ast.ImportFrom)):
            continue
        if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").split(".")[0] == REFERENCE_NAME):
            ours.update(_imported_from(node, module, path))
            continue
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""])
        for name in names:
            top, *rest = name.split(".")
            if top == REFERENCE_NAME:
                ours.add(_resolve(rest))
            elif top not in sys.stdlib_module_names and top != "__future__":
                theirs.add(top)
    texts = {n.value for n in nodes
             if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return frozenset(ours), frozenset(theirs), frozenset(texts)


def _imported_from(node: ast.ImportFrom, module: str, path: Path) -> set[str]:
    """The modules of ours that a `from … import …` statement in `module` needs.

    `from .x import y` counts from the module's own package, `from ..x import y` from
    the one above; `from . import x` imports the module `x` or, if there is none, the
    name `x` from the package's `__init__.py`.
    """
    if node.level:
        package = _package_of(module)
        if node.level - 1 > len(package):
            raise NotImplementedError(f"{path}: relative import above the package")
        base = package[:len(package) - (node.level - 1)]
        dotted = node.module.split(".") if node.module else []
    else:  # from llm_reference[.x] import y
        base, dotted = [], node.module.split(".")[1:]
    if dotted:
        return {_resolve(base + dotted)}
    names = {_resolve([*base, alias.name]) for alias in node.names}
    return {name if exists(name) else _resolve(base) for name in names}


def closure(entries: Iterable[str]) -> list[str]:
    """The entry modules, everything they import (transitively) and the commands
    they complete, sorted.

    `__init__` is always in: it makes the folder a package (and holds __version__);
    a module of a subpackage brings the subpackage's `__init__`. A command's module
    (`cli/train`, see `commands`) comes along when everything it imports is already
    in, but for modules of its own subpackage (`cli/common`): commands follow the
    track's modules, they never add one.
    """
    found = _imported(["__init__", *entries])
    for command in commands().values():
        if exists(command):
            needs = _imported([command])
            if all(_package_of(m) == _package_of(command) for m in needs - found):
                found |= needs
    return sorted(found)


def _imported(entries: Iterable[str]) -> set[str]:
    """The entries and every module they import, transitively."""
    found: set[str] = set()
    todo = list(entries)
    while todo:
        module = todo.pop()
        if module in found:
            continue
        found.add(module)
        package = _package_of(module)
        if package:
            todo.append(_resolve(package))  # its __init__.py runs first
        needs = imports(module)[0]
        if module == CHECK_INIT:  # the node checks come with their nodes
            needs = {m for m in needs if not check_nodes([m])}
        todo += sorted(needs - found)
    return found


def commands() -> dict[str, str]:
    """Command -> its module, from the COMMANDS of `__main__.py` ("train" ->
    "cli/train"); none in a package without `__main__.py`."""
    if not (REFERENCE / "__main__.py").is_file():
        return {}
    table = _commands_table((REFERENCE / "__main__.py").read_text(encoding="utf-8"))
    return {ast.literal_eval(key): ast.literal_eval(value)[0].replace(".", "/")
            for key, value in zip(table.keys, table.values)}


def _commands_table(source: str) -> ast.Dict:
    """The `COMMANDS = {…}` dict of `__main__.py`'s source, as a syntax tree."""
    return next(node.value for node in ast.parse(source).body
                if isinstance(node, ast.Assign)
                and any(getattr(t, "id", "") == "COMMANDS" for t in node.targets))


def third_party(modules: Iterable[str]) -> set[str]:
    """Top-level names of the non-stdlib packages these modules import."""
    return set().union(*(imports(m)[1] for m in modules))


def requirements(packages: Iterable[str]) -> list[str]:
    """pip requirements for import names: our own bounds where we have one.

    `numpy` -> "numpy>=1.26" (from llm-from-scratch's requirements); a package we
    only get through another one (pydantic, via fastapi) is listed without a bound.
    """
    pattern = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
    try:
        specs = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:  # run from a checkout
        specs = []
    ours = {}
    for spec in specs:
        requirement = spec.split(";")[0].strip()
        ours[_canonical(pattern.match(requirement)[0])] = requirement
    distributions = _packages_distributions()
    wanted = {distributions.get(p, [p])[0] for p in packages}
    return sorted((ours.get(_canonical(d), d) for d in wanted), key=str.lower)


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # slow: it reads every RECORD


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------ rendering


def rename(text: str, package: str) -> str:
    """Every whole word `llm_reference` -> `package` (`llm-reference-data/1`, a file
    format's name, has a hyphen and stays)."""
    return re.sub(rf"\b{REFERENCE_NAME}\b", package, text)


def header(relative: str) -> str:
    """The first lines of a copied module: where it came from."""
    return (f"# Copied by `python -m scaffold` from {REFERENCE_NAME}/{relative}\n"
            f"# (LLM From Scratch {llm_reference.__version__}), with the package "
            "renamed. It is yours to change.\n")


def render_module(module: str, package: str) -> str:
    """The starter repo's copy of one module."""
    source = (REFERENCE / f"{module}.py").read_text(encoding="utf-8")
    return header(f"{module}.py") + rename(source, package)


def render_main(package: str, modules: Iterable[str]) -> str:
    """The command dispatcher, with only the commands whose module is copied.

    `__main__.py` maps each command to a module in its COMMANDS dict, one entry per
    line(s); we drop the lines of the entries whose module the repo does not have.
    """
    source = (REFERENCE / "__main__.py").read_text(encoding="utf-8")
    keep = set(modules)
    drop: set[int] = set()
    previous_end = 0
    table = _commands_table(source)
    for key, value in zip(table.keys, table.values):
        if key is None or key.lineno == previous_end:
            raise NotImplementedError("__main__.py: one COMMANDS entry per line")
        previous_end = value.end_lineno
        if ast.literal_eval(value)[0].replace(".", "/") not in keep:
            drop.update(range(key.lineno, value.end_lineno + 1))
    lines = source.splitlines(keepends=True)
    kept = "".join(line for number, line in enumerate(lines, 1) if number not in drop)
    return header("__main__.py") + rename(kept, package)


def render_check_init(package: str, modules: Iterable[str]) -> str:
    """check/__init__.py with only the node checks among `modules`.

    It imports the node modules in one `from . import (…)` and lists them in the
    tuple that builds NODES; both keep only the copied nodes, in their order."""
    source = (REFERENCE / f"{CHECK_INIT}.py").read_text(encoding="utf-8")
    keep = set(check_nodes(modules))
    tree = ast.parse(source)
    statement = next(n for n in tree.body if isinstance(n, ast.ImportFrom)
                     and n.level == 1 and n.module is None)
    names = [a.name for a in statement.names if a.name in keep]
    table = next(n for n in ast.walk(tree) if isinstance(n, ast.Tuple)
                 and {getattr(e, "id", "") for e in n.elts} >= keep
                 and all(isinstance(e, ast.Name) for e in n.elts) and n.elts)
    order = [e.id for e in table.elts if e.id in keep]
    lines = source.splitlines(keepends=True)
    edits = [(statement, "from . import (\n" + "".join(
        f"    {name},\n" for name in names) + ")"),
             (table, textwrap.fill(
                 "(" + ", ".join(order) + ("," if len(order) == 1 else "") + ")",
                 width=84, subsequent_indent="    "))]
    for node, text in sorted(edits, key=lambda e: e[0].lineno, reverse=True):
        start = sum(map(len, lines[:node.lineno - 1])) + node.col_offset
        end = sum(map(len, lines[:node.end_lineno - 1])) + node.end_col_offset
        source = source[:start] + text + source[end:]
        lines = source.splitlines(keepends=True)
    return header(f"{CHECK_INIT}.py") + rename(source, package)


def data_files(modules: Iterable[str]) -> list[str]:
    """Non-Python files and folders of the package that these modules name.

    hardware.py reads `calibration.json` next to itself and config.py the `presets`
    folder: a module needs such a file exactly when its name is one of the module's
    string constants.
    """
    named = set().union(*map(strings, modules))
    return sorted(p.name for p in REFERENCE.iterdir()
                  if p.name in named and _is_data(p))


def _is_data(path: Path) -> bool:
    if path.name.startswith((".", "__")) or path.suffix in (".py", ".pyc"):
        return False
    return path.is_file() or not (path / "__init__.py").exists()


def package_files(modules: Iterable[str], package: str,
                  commands: Iterable[str]) -> dict[str, bytes]:
    """Relative path -> contents of the starter repo's package folder.

    `modules` are copied; `commands` are the modules whose commands `__main__.py`
    keeps; data files are copied byte for byte.
    """
    modules = list(modules)
    files = {f"{m}.py": render_module(m, package).encode() for m in modules}
    files["__main__.py"] = render_main(package, commands).encode()
    if CHECK_INIT in modules:
        files[f"{CHECK_INIT}.py"] = render_check_init(package, commands).encode()
    files.update({p: (REFERENCE / p).read_bytes() for p in data_paths(modules)})
    return files


def data_paths(modules: Iterable[str]) -> list[str]:
    """The data files these modules need, as paths relative to the package."""
    paths = []
    for name in data_files(modules):
        path = REFERENCE / name
        found = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        paths += [p.relative_to(REFERENCE).as_posix() for p in found]
    return paths
