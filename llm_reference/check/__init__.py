"""Reader checkpoints: validate your own implementation of a roadmap step.

    python -m llm_reference check attention --impl my_attention:attention
    python -m llm_reference check pretraining --impl my_train      # several parts
    python -m llm_reference check --list [NODE]     # the nodes and their protocols
    python -m llm_reference check NODE              # the reference itself
    python -m llm_reference check all               # every node, on the reference

Each node (one module here) documents a small protocol, what your function or class
must provide, and runs checks that compare it with the reference numerically (fixed
seeds, stated tolerances) and behaviourally (causality, round trips, edge cases).
It prints one line per check, `PASS node.check` or `FAIL node.check: what differed;
hint: … — see the book, chapter "…", section "…"`, and exits with 0 only if
nothing failed. A few checks are optional, such as the Llama-style model: raise
NotImplementedError for them and they are reported as SKIP.

`--impl` takes `module:attr` (imported from the current folder) or
`path/to/file.py:attr`; for a node whose protocol has several parts, name the module
or file alone and it must define them all (`--part NAME` runs one part's checks).

For the book: `NODES` maps each node id to its `Node` (title, protocol text,
checks, `sections()` that the hints cite) and `command_for(node_id)` gives the
command its checkpoint box prints. The command line itself is `cli/check.py`.
"""

from __future__ import annotations

from . import (
    attention,
    dataset,
    embeddings,
    finetuning,
    generation,
    model,
    objective,
    pretraining,
    quantization,
    reasoning,
    stability,
    tokenizer,
)
from .runner import Node, Result, run_node

__all__ = ["NODES", "Node", "Result", "command_for", "run_node"]

NODES: dict[str, Node] = {m.node.id: m.node for m in (
    tokenizer, dataset, embeddings, attention, model, objective, pretraining,
    stability, generation, finetuning, quantization, reasoning)}


def command_for(node_id: str) -> str:
    """The command that checks a reader's implementation of the node, e.g.
    "python -m llm_reference check attention --impl my_attention:attention".

    Raises KeyError for a roadmap node without checks (test with `in NODES`).
    """
    return NODES[node_id].command()
