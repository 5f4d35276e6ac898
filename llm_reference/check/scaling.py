"""scaling: compute, the compute-optimal split, the expected loss and the hours.

Protocol: a module with four functions

    training_flops(n_params, tokens) -> float
    compute_optimal(flops, tokens_per_param=20.0) -> (n_params, tokens)
    expected_loss(n_params, tokens) -> float
    training_seconds(flops, n_devices, peak_flops, mfu) -> float

`training_flops`: C = 6 N D, 2 FLOPs per parameter per token forward and 4
backward.

`compute_optimal`: the model size N and token count D that spend `flops` with
D = r N (r = tokens_per_param; Chinchilla's ~20): 6 N (r N) = C gives
N = sqrt(C / 6r) and D = r N. Raise an exception (any) for flops <= 0.

`expected_loss`: L(N, D) = E + A / N^alpha + B / D^beta in nats per token, with
the Chinchilla replication's fit (Besiroglu et al. 2024): E = 1.82, A = 482.01,
B = 2085.43, alpha = 0.3478, beta = 0.3658.

`training_seconds`: the wall time t = C / (devices x peak FLOP/s x MFU).

Reference: `llm_reference.flops.training_flops`,
`llm_reference.scaling.compute_optimal`, `scaling.LOSS_FIT.loss`, and the wall time
the planner (`plan.py`) computes.
Command: python -m llm_reference check scaling --impl my_scaling
Tolerance: 1e-9 relative.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import torch

from ..flops import training_flops
from ..scaling import LOSS_FIT, compute_optimal
from .runner import Node, Suspect, as_float64, expect_close, fail


def reference_training_seconds(flops: float, n_devices: int, peak_flops: float,
                               mfu: float) -> float:
    return flops / (n_devices * peak_flops * mfu)


node = Node(
    id="scaling",
    title="Scaling laws and budget planning",
    protocol=__doc__,
    example="my_scaling",
    reference=lambda: SimpleNamespace(
        training_flops=training_flops, compute_optimal=compute_optimal,
        expected_loss=LOSS_FIT.loss, training_seconds=reference_training_seconds),
    parts=("training_flops", "compute_optimal", "expected_loss", "training_seconds"),
)
TOL = dict(atol=0.0, rtol=1e-9)


def f64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def numbers(value: object, what: str) -> torch.Tensor:
    return as_float64(value, what).reshape(-1)


@node.check("six_n_d", uses=["training_flops"], section="Compute: $C approx 6 N D$",
            hint="C = 6 N D: 2 FLOPs per parameter per token forward, 4 backward")
def six_n_d(impl: Callable) -> None:
    for n, d in ((124e6, 2.5e9), (70e9, 1.4e12)):
        expect_close(numbers(impl(n, d), "training_flops"), f64(training_flops(n, d)),
                     f"training_flops({n:g}, {d:g})", **TOL, suspects=[
            Suspect(f64(2 * n * d), "2 N D, the forward pass only",
                    "the backward pass costs twice the forward: 6 N D")])


@node.check("compute_optimal_matches_reference", uses=["compute_optimal"],
            section="Compute-optimal model and data",
            hint="N = sqrt(C / (6 r)), D = r N: return the tuple (N, D)")
def compute_optimal_matches_reference(impl: Callable) -> None:
    for flops, r in ((5.76e23, 20.0), (1e18, 20.0), (3e21, 100.0)):
        ours = numbers(impl(flops, r), "compute_optimal")
        n, d = compute_optimal(flops, r)
        expect_close(ours, f64(n, d), f"(N, D) for C = {flops:g}, r = {r:g}", **TOL,
                     suspects=[Suspect(f64(d, n), "(D, N), swapped",
                                       "return (n_params, tokens)")])
    n, d = numbers(impl(1e20), "compute_optimal").tolist()
    expect_close(f64(d / n), f64(20.0), "D / N with the default tokens_per_param",
                 **TOL)


@node.check("compute_optimal_refuses_no_budget", uses=["compute_optimal"],
            section="Compute-optimal model and data",
            hint="a budget of 0 or fewer FLOPs has no optimal model: raise")
def compute_optimal_refuses_no_budget(impl: Callable) -> None:
    for flops in (0.0, -1e20):
        try:
            result = impl(flops, 20.0)
        except NotImplementedError:
            raise  # not written yet is not a refusal: a FAIL
        except Exception:
            continue
        fail(f"compute_optimal({flops:g}) returned {result!r} instead of raising")


@node.check("loss_matches_reference", uses=["expected_loss"],
            section="The loss to expect: $L(N, D)$",
            hint="L = E + A / N^alpha + B / D^beta with the constants of the "
                 "protocol (python -m llm_reference check --list scaling)")
def loss_matches_reference(impl: Callable) -> None:
    for n, d in ((70e9, 1.4e12), (1e8, 2e9), (1e6, 1e6)):
        expect_close(numbers(impl(n, d), "expected_loss"), f64(LOSS_FIT.loss(n, d)),
                     f"expected_loss({n:g}, {d:g})", **TOL)


@node.check("seconds_match_reference", uses=["training_seconds"],
            section="MFU: from FLOPs to hours",
            hint="t = C / (devices x peak x MFU), in seconds")
def seconds_match_reference(impl: Callable) -> None:
    for args in ((5.76e23, 1024, 312e12, 0.4), (1e18, 1, 989e12, 0.35)):
        expect_close(numbers(impl(*args), "training_seconds"),
                     f64(reference_training_seconds(*args)),
                     "training_seconds({:g}, {}, {:g}, {})".format(*args), **TOL)
