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

Each node has a starter file, `starters/NODE/MODULE.py`: the protocol's signatures
with docstrings and `raise NotImplementedError`, named as the command imports it;
the reader fills it in (`check NODE --starter` copies it into the current folder).

For the book: `NODES` maps each node id to its `Node` (title, protocol text,
checks, `sections()` that the hints cite), `command_for(node_id)` gives the
command its checkpoint box prints and `starter_for(node_id)` the file it
attaches. The command line itself is `cli/check.py`.
"""

from __future__ import annotations

from pathlib import Path

from . import (
    attention,
    data,
    dataset,
    distributed,
    efficiency,
    embeddings,
    evaluation,
    finetuning,
    generation,
    mental_model,
    model,
    moe,
    objective,
    preference,
    pretraining,
    quantization,
    reasoning,
    release,
    scaling,
    serving,
    stability,
    tokenizer,
)
from .runner import Node, Result, run_node

__all__ = ["NODES", "Node", "Result", "command_for", "run_node", "starter_for"]

NODES: dict[str, Node] = {m.node.id: m.node for m in (
    mental_model, data, tokenizer, dataset, embeddings, attention, model, objective,
    pretraining, stability, efficiency, scaling, moe, distributed, evaluation,
    generation, finetuning, preference, quantization, serving, reasoning, release)}


def command_for(node_id: str) -> str:
    """The command that checks a reader's implementation of the node, e.g.
    "python -m llm_reference check attention --impl my_attention:attention".

    Raises KeyError for a roadmap node without checks (test with `in NODES`).
    """
    return NODES[node_id].command()


def starter_for(node_id: str) -> Path:
    """The starter file of the node's checks, e.g. starters/attention/my_attention.py.

    Raises KeyError for a roadmap node without checks.
    """
    return NODES[node_id].starter()
