"""`audit`: the roadmap's suggested automated checks, as checks that run.

Each module registers the checks of one area (data, dataset, model, tokenizer,
release, serving, distributed, stability) under stable ids; `registry.CHECKS` holds
them all, `runner.run_audit` runs them over the folders and files given, and `report`
prints the results as a table, JSON or SARIF. Importing this package registers every
check.
"""

from . import (  # noqa: F401  (each import registers its area's checks)
    data,
    dataset,
    decontamination,
    distributed,
    model,
    release,
    serving,
    stability,
    tokenizer,
)
from .registry import CHECKS, Check, Finding, Outcome, Targets
from .runner import FAIL, PASS, SKIPPED, Result, exit_code, run_audit

__all__ = ["CHECKS", "Check", "Finding", "Outcome", "Targets", "Result", "run_audit",
           "exit_code", "PASS", "FAIL", "SKIPPED"]
