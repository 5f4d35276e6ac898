"""Your training-stability monitor, for the `stability` checkpoint.

Fill in the class, then run from this folder:

    python -m llm_reference check stability --impl my_monitor:Monitor

(`python -m llm_reference check --list stability` prints the full protocol.)
"""

from __future__ import annotations


class Monitor:
    def __init__(self):
        """No arguments: choose your own defaults (window, threshold)."""
        raise NotImplementedError("Monitor")

    def observe(self, loss: float, grad_norm: float):
        """Called once per step: return something truthy for a step that must not
        be trusted (NaN or inf, a loss spike), None otherwise."""
        raise NotImplementedError("Monitor.observe")
