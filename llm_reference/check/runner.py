"""What every node's checks share: nodes, results, comparisons and loading `--impl`.

A node (a step of the roadmap) declares a protocol, what the reader's code must
provide, and a list of checks. A check is a small function registered with
`@node.check(...)`: it calls the reader's implementation on tiny inputs with fixed
seeds and compares with the reference, and fails by raising `CheckFailed` with a
message that says what differed (a shape, the first mismatching index and values).

`run_node` turns each check into a `Result`:

- PASS;
- FAIL, with the message and a hint that points to the book's section; an exception
  raised by the reader's code is a FAIL with the exception's one-line summary, never
  a crash;
- SKIP, only for a check marked optional (a recipe a track may leave out, such as
  the Llama-style model) whose implementation raised `NotImplementedError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any, NoReturn

import torch

from ..errors import UserError

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
STARTERS = Path(__file__).parent / "starters"  # one folder per node


class CheckFailed(Exception):
    """A check's verdict: `message` says what differed; `hint` replaces its hint."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def fail(message: str, hint: str | None = None) -> NoReturn:
    raise CheckFailed(message, hint)


@dataclass
class Check:
    name: str  # "causal": reported as "attention.causal"
    run: Callable[..., None]
    uses: tuple[str, ...]  # the parts of the implementation it calls
    hint: str
    section: str  # the book's section that the hint points to
    optional: bool = False


@dataclass
class Result:
    check: str  # "attention.causal"
    status: str  # PASS, FAIL or SKIP
    message: str = ""
    hint: str = ""

    def line(self) -> str:
        """`PASS node.check`, or `FAIL node.check: what differed; hint: …`."""
        text = f"{self.status} {self.check}"
        if self.message:
            text += f": {self.message}"
        if self.hint:
            text += f"; hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status,
                "message": self.message, "hint": self.hint}


@dataclass
class Node:
    """A roadmap step's protocol and checks.

    `parts` are the names a multi-part implementation provides (a module with
    `rope` and `embed`, say); an empty tuple means the implementation is one
    function or class, passed to every check as it is.
    """

    id: str
    title: str
    protocol: str  # the node module's docstring
    example: str  # the --impl that the book's command shows
    reference: Callable[[], Any]  # builds the reference implementation
    parts: tuple[str, ...] = ()
    checks: list[Check] = field(default_factory=list)

    def check(self, name: str, *, hint: str, section: str, uses: Sequence[str] = (),
              optional: bool = False) -> Callable:
        """Register the decorated function as this node's check `name`."""
        unknown = set(uses) - set(self.parts)
        assert not unknown, f"{self.id}.{name} uses unknown parts {unknown}"

        def register(fn: Callable[..., None]) -> Callable[..., None]:
            self.checks.append(Check(name, fn, tuple(uses), hint, section, optional))
            return fn

        return register

    def command(self) -> str:
        return f"python -m llm_reference check {self.id} --impl {self.example}"

    def starter(self) -> Path:
        """The file the reader starts from: the protocol's signatures, docstrings
        and `raise NotImplementedError`, named as the command imports it
        (starters/attention/my_attention.py for --impl my_attention:attention)."""
        return STARTERS / self.id / (self.example.partition(":")[0] + ".py")

    def sections(self) -> list[str]:
        """The book sections this node's hints point to, in order of first use."""
        return list(dict.fromkeys(c.section for c in self.checks))


# ------------------------------------------------------------------- running


def run_node(node: Node, impl: Any, parts: Sequence[str] = ()) -> list[Result]:
    """Run the node's checks (only those using `parts`, if given) against impl."""
    return [run_check(node, check, impl) for check in node.checks
            if not parts or set(check.uses) & set(parts)]


def run_check(node: Node, check: Check, impl: Any) -> Result:
    name = f"{node.id}.{check.name}"
    hint = book_hint(node.id, check.hint, check.section)
    missing = [p for p in check.uses if not hasattr(impl, p)]
    if missing:
        return Result(name, FAIL, f"your implementation has no `{missing[0]}`",
                      f"define it as the protocol says (python -m llm_reference "
                      f"check --list {node.id})")
    args = [getattr(impl, p) for p in check.uses] if node.parts else [impl]
    torch.manual_seed(0)  # the same start for every check, whatever ran before
    try:
        check.run(*args)
    except CheckFailed as e:
        if e.hint:
            hint = book_hint(node.id, e.hint, check.section)
        return Result(name, FAIL, str(e), hint)
    except Exception as e:  # the reader's code failed: report it, do not crash
        if check.optional and isinstance(e, NotImplementedError):
            return Result(name, SKIP, "optional; your implementation raised "
                                      "NotImplementedError")
        return Result(name, FAIL, f"raised {exception_summary(e)}", hint)
    return Result(name, PASS)


def book_hint(node_id: str, hint: str, section: str) -> str:
    return f'{hint} — see the book, chapter "{node_id}", section "{section}"'


_LIBRARIES = tuple({sysconfig.get_paths()[k] + os.sep for k in
                    ("stdlib", "platstdlib", "purelib", "platlib")})
_CHECKS = str(Path(__file__).parent) + os.sep


def exception_summary(e: BaseException) -> str:
    """`ValueError: the message's first line (my_file.py:12)`.

    The location is the deepest frame in the reader's own code: not in the checks,
    not in PyTorch or the standard library.
    """
    lines = str(e).strip().splitlines()
    text = type(e).__name__ + (f": {lines[0][:200]}" if lines else "")
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if not f.filename.startswith((_CHECKS, *_LIBRARIES))
              and Path(f.filename).is_file()]  # not compiled code (numpy's .pyx)
    if frames:
        text += f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})"
    return text


# --------------------------------------------------------------- comparisons


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """The reader's return value as a tensor (lists and arrays are accepted)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        fail(f"{what} is a {type(value).__name__}, expected a tensor")


def as_float64(value: Any, what: str) -> torch.Tensor:
    """The reader's number (or tuple of numbers) as float64, without rounding it
    to float32 as `as_tensor` of a Python float would."""
    try:
        if isinstance(value, (tuple, list)):
            return torch.tensor([float(v) for v in value], dtype=torch.float64)
        return torch.tensor(float(value), dtype=torch.float64)
    except (TypeError, ValueError):
        fail(f"{what} is {short(value)}, expected a number")


def mismatch(actual: torch.Tensor, expected: torch.Tensor, atol: float,
             rtol: float) -> str | None:
    """None if close, else the shape, or the first differing index and values."""
    if tuple(actual.shape) != tuple(expected.shape):
        return f"has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    a, e = actual.double(), expected.double()
    bad = ~torch.isclose(a, e, rtol=rtol, atol=atol)
    if not bad.any():
        return None
    index = tuple(bad.nonzero()[0].tolist())
    values = f"is {a[index]:.6g}, expected {e[index]:.6g}"
    if not index:  # a scalar
        return values
    inf = float("inf")
    worst = (a - e)[bad].abs().nan_to_num(nan=inf, posinf=inf).max()
    return (f"at index {index} {values} ({int(bad.sum())} of {bad.numel()} values "
            f"differ, max |Δ| = {worst:.3g})")


@dataclass
class Suspect:
    """What a known mistake would output, to name it when the output matches."""

    output: torch.Tensor
    mistake: str  # "attention without the 1 / sqrt(D) scale"
    hint: str


def expect_close(actual: Any, expected: torch.Tensor, what: str = "output",
                 atol: float = 1e-5, rtol: float = 1e-4,
                 suspects: Sequence[Suspect] = ()) -> None:
    """Fail unless |actual - expected| <= atol + rtol * |expected| everywhere."""
    actual = as_tensor(actual, what)
    problem = mismatch(actual, expected, atol, rtol)
    if problem is None:
        return
    for s in suspects:
        if mismatch(actual, s.output, atol, rtol) is None:
            fail(f"{what} {problem}; it matches {s.mistake}", s.hint)
    fail(f"{what} {problem}")


def expect_equal(actual: Any, expected: Any, what: str) -> None:
    if actual != expected:
        fail(f"{what} is {short(actual)}, expected {short(expected)}")


def short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    """A float32 standard-normal tensor that depends only on its shape and seed."""
    return torch.randn(*shape, generator=generator(seed))


# ---------------------------------------------------------------- --impl


def load_impl(spec: str) -> Any:
    """Import what `--impl` names: `module:attr`, `path/to/file.py:attr`, or a
    module or file alone (for nodes whose protocol has several parts).

    Module names are imported from the current folder first; a file's folder is put
    on sys.path so that it can import its neighbours. Anything wrong is one UserError.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not attr or "/" in attr or "\\" in attr or attr.endswith(".py"):
        target, attr = spec, ""
    if not target:
        raise UserError(f"--impl {spec!r}: give module:attr, e.g. "
                        "--impl my_attention:attention")
    module = _import_file(spec, target) if _is_path(target) else _import(spec, target)
    if not attr:
        return module
    try:
        return reduce(getattr, attr.split("."), module)
    except AttributeError:
        names = [n for n in vars(module) if not n.startswith("_")]
        raise UserError(f"--impl {spec}: {target} has no attribute {attr!r}; it "
                        f"defines {', '.join(names[:12]) or 'nothing'}") from None


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _import(spec: str, name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise UserError(f"--impl {spec}: no module {name!r} in {cwd} or on the "
                            "Python path; run from the folder that holds it or give "
                            "a file: --impl path/to/file.py:attr") from None
        raise UserError(f"--impl {spec}: importing {name} raised "
                        f"{exception_summary(e)}") from None
    except Exception as e:
        raise UserError(f"--impl {spec}: importing {name} raised "
                        f"{exception_summary(e)}") from None


def _import_file(spec: str, target: str) -> Any:
    path = Path(target).resolve()
    if not path.is_file():
        raise UserError(f"--impl {spec}: no file {target}")
    name = path.stem
    if name in sys.modules:  # another module of that name: load ours beside it
        name = f"{path.stem}_{abs(hash(str(path)))}"
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses look their module up while defined
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise UserError(f"--impl {spec}: importing {target} raised "
                        f"{exception_summary(e)}") from None
    return module
