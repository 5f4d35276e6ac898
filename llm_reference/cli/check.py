"""`check`: validate your own implementation of a roadmap step (`check/`).

The checks themselves, one module per node, are in `llm_reference/check/`; this
module reads the options, picks the nodes and prints the results as lines or JSON.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from ..check.runner import Node, Result


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", nargs="?", metavar="NODE",
                        help="the roadmap step to check (--list shows them), or 'all' "
                             "(every node, on the reference)")
    parser.add_argument("--impl", metavar="MODULE:ATTR",
                        help="your implementation: module:attr (imported from the "
                             "current folder), path/to/file.py:attr, or a module or "
                             "file alone for a node with several parts; without it "
                             "the reference is checked")
    parser.add_argument("--part", action="append", default=[], metavar="NAME",
                        help="only the checks of this part of a several-part node "
                             "(e.g. --part lr_schedule); repeat for more")
    parser.add_argument("--list", action="store_true",
                        help="print the nodes (or NODE) with their protocols and "
                             "checks, and exit")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object instead of lines")
    parser.add_argument("--starter", action="store_true",
                        help="write NODE's starter file (the protocol to fill in, "
                             "e.g. my_attention.py) into the current folder, and exit")


def run(args: argparse.Namespace) -> int:
    import torch  # here, with the checks: `--help` does not load torch

    from ..check import NODES
    from ..check.runner import FAIL, load_impl, run_node

    if args.list:
        print(listing(selected(NODES, args.node) if args.node
                      else list(NODES.values())))
        return 0
    if not args.node:
        raise UserError(f"name a node to check ({', '.join(NODES)} or all), or "
                        "--list to see them")
    nodes = selected(NODES, args.node)
    if args.starter:
        return write_starter(nodes, args.node)
    if args.node == "all" and (args.impl or args.part):
        raise UserError("check all runs every node on the reference; to check your "
                        "code, name one node: check NODE --impl module:attr")
    check_parts(nodes[0], args.part)
    impl = load_impl(args.impl) if args.impl else None
    if impl is not None:
        check_impl_shape(nodes[0], impl, args.impl)
    torch.set_num_threads(1)  # tiny tensors: more threads only add overhead
    report = {node.id: run_node(node, node.reference() if impl is None else impl,
                                args.part) for node in nodes}
    ok = all(r.status != FAIL for rs in report.values() for r in rs)
    print(as_json(report, ok) if args.json else as_text(report))
    return 0 if ok else 1


def selected(nodes: dict[str, Node], name: str) -> list[Node]:
    """The node called `name`, or every node for "all"."""
    if name == "all":
        return list(nodes.values())
    if name not in nodes:
        raise UserError(f"unknown node {name!r}; the nodes with checks are "
                        f"{', '.join(nodes)} (or all)")
    return [nodes[name]]


def write_starter(nodes: list[Node], name: str) -> int:
    """Copy the node's starter file into the current folder, never over a file."""
    from ..atomic import write_text

    if name == "all":
        raise UserError("--starter writes one node's file: name the node, e.g. "
                        "check attention --starter")
    node = nodes[0]
    source = node.starter()
    target = Path.cwd() / source.name
    if target.exists():
        raise UserError(f"{target} exists; fill it in and run: {node.command()} "
                        "(or move it away to start again)")
    write_text(target, source.read_text(encoding="utf-8"))
    print(f"wrote {source.name}: replace each `raise NotImplementedError`, then run\n"
          f"  {node.command()}")
    return 0


def check_parts(node: Node, parts: list[str]) -> None:
    unknown = [p for p in parts if p not in node.parts]
    if unknown:
        known = ", ".join(node.parts) or "none: it is one function or class"
        raise UserError(f"--part {unknown[0]}: the {node.id} node's parts are "
                        f"{known}")


def check_impl_shape(node: Node, impl: Any, spec: str) -> None:
    """A several-part node needs an object holding the parts, usually a module;
    a one-part node needs the function or class itself."""
    if node.parts and not any(hasattr(impl, p) for p in node.parts):
        raise UserError(f"--impl {spec} has none of {', '.join(node.parts)}: for the "
                        f"{node.id} node give the module that defines them, e.g. "
                        f"--impl {node.example}")
    if not node.parts and isinstance(impl, types.ModuleType):
        raise UserError(f"--impl {spec} is a module; for the {node.id} node name "
                        f"the function or class in it, e.g. --impl {node.example}")


def as_text(report: dict[str, list[Result]]) -> str:
    lines = []
    for node_id, results in report.items():
        lines += [r.line() for r in results]
        lines.append(f"{node_id}: " + summary(results))
    return "\n".join(lines)


def summary(results: list[Result]) -> str:
    """"3 passed, 1 failed": how many checks ended each way."""
    from ..check.runner import FAIL, PASS, SKIP

    counts = [(sum(r.status == s for r in results), word)
              for s, word in ((PASS, "passed"), (FAIL, "failed"), (SKIP, "skipped"))]
    return ", ".join(f"{n} {word}" for n, word in counts if n or word == "passed")


def as_json(report: dict[str, list[Result]], ok: bool) -> str:
    return json.dumps({
        "ok": ok,
        "nodes": {node_id: [r.to_dict() for r in rs] for node_id, rs in report.items()},
    }, indent=2, ensure_ascii=False)


def listing(nodes: list[Node]) -> str:
    blocks = []
    for node in nodes:
        checks = textwrap.fill(", ".join(c.name + (" (optional)" if c.optional else "")
                                         for c in node.checks), width=84,
                               initial_indent="    ", subsequent_indent="    ")
        blocks.append(f"{node.id} — {node.title}\n  {node.command()}\n\n"
                      f"{textwrap.indent(node.protocol.strip(), '    ')}\n\n"
                      f"  checks:\n{checks}")
    return "\n\n".join(blocks)
